#!/usr/bin/perl

# Head sampling: the fraction exported at several rates, the same key
# always getting the same decision (across workers and two nginx
# instances), the same trace getting the same decision at a second nginx
# downstream, parent-based sampling, and errors and slow requests exported
# even when sampled out.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use VaqueroTest qw(http http_get);

plan(skip_all => 'curl missing') unless `curl --version 2>/dev/null`;

my $t = VaqueroTest->new;      # the edge
my $t2 = VaqueroTest->new;     # a second nginx with the same config
my $down = VaqueroTest->new;   # a nginx downstream of the edge

my $closed_port = $t->closed_port('closed');

my $conf = <<"CONF";
%%TEST_GLOBALS%%
worker_processes 2;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_flush_interval 50ms;
    vaquero_batch_size 500;

    upstream app {
        server 127.0.0.1:%%PORT_backend%%;
    }

    upstream refused {
        server 127.0.0.1:$closed_port max_fails=0;
        server 127.0.0.1:%%PORT_backend%% backup;
    }

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        add_header X-Sampled \$vaquero_sampled;

        location /r0 { vaquero_sample_rate 0; return 200; }
        location /r01 { vaquero_sample_rate 0.1; return 200; }
        location /r05 { vaquero_sample_rate .5; return 200; }
        location /r1 { vaquero_sample_rate 1.0; return 200; }

        location /key {
            vaquero_sample_rate 0.5;
            vaquero_sample_key \$arg_user;
            return 200;
        }

        location /api/ {
            vaquero_sample_rate 0.5;
            proxy_pass http://app;
        }

        location /hop {
            vaquero_sample_rate 0.25;
            proxy_pass http://127.0.0.1:%%PORT_down%%;
        }

        location /parent { return 200; }
        location /parent-off { vaquero_sample_parent off; return 200; }
        location /parent-rate { vaquero_sample_rate 1; return 200; }

        location /err { vaquero_sample_rate 0; return 500; }
        location /ok { vaquero_sample_rate 0; return 200; }
        location /errors-off {
            vaquero_sample_rate 0;
            vaquero_sample_errors off;
            return 500;
        }

        location /retry/ {
            vaquero_sample_rate 0;
            proxy_pass http://refused/api/;
        }

        location /slow/ {
            vaquero_sample_rate 0;
            vaquero_sample_slow 150ms;
            proxy_pass http://app/api/;
        }
    }
}
CONF

# the downstream nginx decides on its own (not following the parent), at
# twice the edge's rate: consistent sampling keeps all the edge kept
$down->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_flush_interval 50ms;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        vaquero_sample_rate 0.5;
        vaquero_sample_parent off;
        location / {
            return 200 "$vaquero_sampled $vaquero_trace_id $http_tracestate";
        }
    }
}
CONF
$down->start_collector->run(wait_ports => ['http']);

(my $edge = $conf) =~ s/%%PORT_down%%/${\ $down->port('http')}/g;
$t->write_config($edge)->start_collector->start_backend
  ->run(wait_ports => ['http']);
my $port = $t->port('http');

# $n requests to $url_glob (curl's [1-N] globbing, one connection);
# returns each answer's X-Sampled value
sub sampled_of {
    my ($port, $glob, @curl) = @_;
    my $out = `curl -s -o /dev/null @curl -w '%header{x-sampled}\\n' 'http://127.0.0.1:$port$glob'`;
    return split /\n/, $out;
}

sub exported {
    my ($t, $path) = @_;
    return grep { $_->{attrs}{'url.path'} eq $path } $t->server_spans;
}

# --- the fraction exported lies within 4 standard deviations of R --------

my $N = 2000;
my %sampled;
for my $c ([0, '/r0'], [0.1, '/r01'], [0.5, '/r05'], [1, '/r1']) {
    my ($rate, $path) = @$c;
    my @s = sampled_of($port, "$path?i=[1-$N]");
    is(scalar @s, $N, "rate $rate: $N answers");
    my $k = grep { $_ eq '1' } @s;
    my $sd = sqrt($rate * (1 - $rate) / $N);
    ok(abs($k / $N - $rate) <= 4 * $sd,
       sprintf('rate %s: %d of %d sampled (%.4f, 4 sd = %.4f)',
               $rate, $k, $N, $k / $N, 4 * $sd));
    my @e = $t->wait_for(sub { exported($t, $path) }, $k);
    is(scalar @e, $k, "rate $rate: the sampled ones exported");
    $sampled{$path} = $k;
}

# --- by key: the same decision every time, anywhere ----------------------

my %first;
my $users = 300;
for my $pass (1, 2) {
    # separate connections: both workers answer
    for my $i (1 .. $users) {
        my $r = http_get($port, "/key?user=u-$i");
        my ($s) = $r =~ /^X-Sampled: (\d)/mi;
        if ($pass == 1) {
            $first{$i} = $s;
        } elsif ($s ne $first{$i}) {
            fail("user u-$i: $first{$i} then $s");
        }
    }
}
my $in = grep { $first{$_} eq '1' } keys %first;
ok(abs($in / $users - 0.5) <= 4 * sqrt(0.25 / $users),
   "by key: $in of $users users sampled, the same each time");

my @e = $t->wait_for(sub { grep { $_->{attrs}{'url.path'} eq '/key' }
                           $t->server_spans }, 2 * $in);
is(scalar @e, 2 * $in, 'by key: every request of a sampled user exported');
my %users_exported = map { ($_->{attrs}{'url.query'} =~ /user=u-(\d+)/)[0] => 1 } @e;
is_deeply([sort { $a <=> $b } keys %users_exported],
          [sort { $a <=> $b } grep { $first{$_} eq '1' } keys %first],
          'by key: and no one else');

# a second nginx with the same configuration decides the same
$t2->write_config($edge)->start_collector->run(wait_ports => ['http']);
my $same = 0;
for my $i (1 .. $users) {
    my ($s) = http_get($t2->port('http'), "/key?user=u-$i") =~ /^X-Sampled: (\d)/mi;
    $same++ if $s eq $first{$i};
}
is($same, $users, 'by key: a second nginx instance decides the same');
$t2->stop;

# --- consistent across hops -----------------------------------------------

my ($agree, $nested, $th, $hops) = (0, 0, 0, 400);
my ($edge_sampled, $down_sampled, $exact) = (0, 0, 0);
for my $i (1 .. $hops) {
    my $r = http_get($port, "/hop?i=$i");
    my ($a) = $r =~ /^X-Sampled: (\d)/mi;
    my ($b, $tid, $ts) = $r =~ /\r\n\r\n(\d) (\w+) ?(.*)$/s;
    $edge_sampled += $a;
    $down_sampled += $b;
    # edge sampled at 0.25 => downstream (0.5, same trace id) sampled too
    $nested++ if !$a || $b;
    # and the edge said so in tracestate: th for 0.25 is "c"
    $th++ if !$a || $ts eq 'ot=th:c';
    # exactly when R, the id's last 14 hex digits, reaches th:c (0.25)
    $exact++ if $a == (substr($tid, 18) ge 'c0000000000000' ? 1 : 0);
}
is($nested, $hops, "downstream kept every trace the edge kept ($edge_sampled of $hops)");
ok(abs($down_sampled / $hops - 0.5) <= 4 * sqrt(0.25 / $hops),
   "downstream decided on its own at 0.5: $down_sampled of $hops");
is($th, $hops, 'tracestate carried ot=th:c for every sampled trace');
is($exact, $hops, 'the edge sampled a new trace exactly when R >= th:c');

# --- what an unsampled request sends upstream -----------------------------

my ($sent_sampled, $sent_not) = (0, 0);
for my $i (1 .. 40) {
    my $r = http_get($port, "/api/raw-headers?i=$i");
    my ($s) = $r =~ /^X-Sampled: (\d)/mi;
    my ($body) = $r =~ /\r\n\r\n(.*)$/s;
    my %h = map { lc($_->[0]) => $_->[1] } @{ decode_json($body) };
    if ($s) {
        $sent_sampled++ if $h{traceparent} =~ /-03$/
                           && ($h{tracestate} // '') eq 'ot=th:8';
    } else {
        $sent_not++ if $h{traceparent} =~ /-02$/ && !exists $h{tracestate};
    }
}
is($sent_sampled + $sent_not, 40,
   'sampled: flags 03 and ot=th:8 sent; not: flags 02 and no tracestate');

# --- parent-based ---------------------------------------------------------

my $tid = '4bf92f3577b34da6a3ce929d0e0e4736';
sub with_parent {
    my ($path, $flags) = @_;
    my $r = http_get($port, $path,
                     traceparent => "00-$tid-00f067aa0ba902b7-$flags");
    my ($s) = $r =~ /^X-Sampled: (\d)/mi;
    return $s;
}
is(with_parent('/parent', '01'), '1', 'parent sampled: sampled');
is(with_parent('/parent', '00'), '0', 'parent not sampled: not sampled');
is(with_parent('/parent-rate', '00'), '0',
   'parent not sampled wins over rate 1 (vaquero_sample_parent on)');
is(with_parent('/parent-off', '00'), '1',
   'vaquero_sample_parent off: decided here');
my @p = $t->wait_for(sub { grep { $_->{attrs}{'url.path'} =~ /^\/parent/ }
                           $t->server_spans }, 2);
is(scalar(grep { $_->{attrs}{'url.path'} eq '/parent' } @p), 1,
   'parent: only the sampled one exported');

# --- errors and slow requests are kept --------------------------------------

sampled_of($port, '/err?i=[1-20]');
sampled_of($port, '/ok?i=[1-20]');
sampled_of($port, '/errors-off?i=[1-20]');
like(http_get($port, '/retry/items/1'), qr/^HTTP\/1.1 200/,
     'an upstream error, then a 200');
like(http_get($port, '/slow/slow?ms=400'), qr/^HTTP\/1.1 200/, 'a slow one');
like(http_get($port, '/slow/slow?ms=1'), qr/^HTTP\/1.1 200/, 'a fast one');

my @err = $t->wait_for(sub { exported($t, '/err') }, 20);
is(scalar @err, 20, 'sampled out, but 5xx: all exported');
is(scalar(grep { ($_->{tags}{'vaquero.kept'} // '') eq 'error' } @err), 20,
   'marked as kept for an error, not part of the sample');

my ($retry) = $t->wait_for(sub { exported($t, '/retry/items/1') }, 1);
ok($retry, 'an upstream error keeps the request');
is($retry->{tags}{'vaquero.kept'}, 'error', 'marked');
my @rc = grep { $_->{parent_id} eq $retry->{span_id} } $t->client_spans;
is(scalar @rc, 2, 'with both its attempts');

my ($slow) = $t->wait_for(sub { exported($t, '/slow/slow') }, 1);
ok($slow, 'slower than vaquero_sample_slow: exported');
is($slow->{tags}{'vaquero.kept'}, 'slow', 'marked as kept for being slow');
like($slow->{attrs}{'url.query'}, qr/ms=400/, 'the slow one, not the fast one');

$t->stop;
for my $path (sort keys %sampled) {
    is(scalar(exported($t, $path)), $sampled{$path},
       "$path: exactly the sampled ones, once all is sent");
}
is(scalar(exported($t, '/key')), 2 * $in, '/key: exactly the sampled users');
is(scalar(exported($t, '/ok')), 0, 'sampled out, 200: nothing exported');
is(scalar(exported($t, '/errors-off')), 0,
   'vaquero_sample_errors off: nothing exported');
is(scalar(grep { $_->{attrs}{'url.path'} eq '/slow/slow' } $t->server_spans), 1,
   'the fast one was not');
is(join("\n", $t->alerts), '', 'no alerts');

$down->stop;

done_testing();

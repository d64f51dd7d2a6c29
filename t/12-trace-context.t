#!/usr/bin/perl

# W3C Trace Context end to end: what the client sends, what the FastAPI
# backend receives, what is exported and what the $vaquero_* variables say,
# for a valid context, each invalid form of the specification, repeated
# headers, and every vaquero_trace_context mode.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use VaqueroTest qw(http);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_flush_interval 50ms;

    log_format trace '$arg_case $vaquero_trace_id $vaquero_span_id '
                     '[$vaquero_parent_id] $vaquero_traceparent $vaquero_sampled';
    access_log %%TESTDIR%%/trace.log trace;

    map $vaquero_sampled $sampled_word {
        1        yes;
        default  no;
    }

    upstream app {
        server 127.0.0.1:%%PORT_backend%%;
    }

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;

        add_header X-Trace-Id $vaquero_trace_id;
        add_header X-Span-Id $vaquero_span_id;
        add_header X-Parent-Id $vaquero_parent_id;
        add_header X-Traceparent $vaquero_traceparent;
        add_header X-Sampled $vaquero_sampled;
        add_header X-Sampled-Word $sampled_word;

        location /api/ {
            proxy_pass http://app;
        }

        location /extract/ {
            vaquero_trace_context extract;
            proxy_pass http://app/api/;
        }

        location /inject/ {
            vaquero_trace_context inject;
            proxy_pass http://app/api/;
        }

        location /ignore/ {
            vaquero_trace_context ignore;
            proxy_pass http://app/api/;
        }

        location /server-parent/ {
            vaquero_upstream_spans off;
            proxy_pass http://app/api/;
        }

        location /set/ {
            proxy_set_header traceparent $vaquero_traceparent;
            proxy_set_header X-Trace-Id $vaquero_trace_id;
            proxy_pass http://app/api/;
        }

        location /off/ {
            vaquero off;
            proxy_pass http://app/api/;
        }

        location = /local {
            return 200 "$vaquero_trace_id $vaquero_span_id $vaquero_sampled\n";
        }
    }
}
CONF
$t->start_collector->start_backend->run(wait_ports => ['http']);
my $port = $t->port('http');

my $TRACE = '0af7651916cd43dd8448eb211c80319c';
my $PARENT = 'b7ad6b7169203331';
my $VALID = "00-$TRACE-$PARENT-01";

sub uuid {
    my ($hex) = @_;
    return join '-', unpack 'A8 A4 A4 A4 A12', $hex;
}

sub unuuid {
    my ($uuid) = @_;
    (my $hex = $uuid) =~ s/-//g;
    return $hex;
}

# GET $uri with the given header lines (duplicates allowed); returns the
# answer and what the backend received.
my $case = 0;
sub get {
    my ($path, @headers) = @_;
    my $uri = $path . '?case=' . ++$case;
    my $reply = http($port, "GET $uri HTTP/1.0\r\nHost: localhost\r\n"
                     . join('', map { "$_->[0]: $_->[1]\r\n" } @headers) . "\r\n");
    my ($head, $body) = split /\r\n\r\n/, $reply, 2;
    my %h;
    for (split /\r\n/, $head) {
        $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
    }
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    return { case => $case, status => $status, headers => \%h, body => $body,
             received => eval { decode_json($body) } // [] };
}

# values of a header as the backend received it, every copy
sub received {
    my ($r, $name) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq $name } @{ $r->{received} };
}

# the server span of a request, and its client spans
sub spans_of {
    my ($r) = @_;
    my ($server) = $t->wait_for(sub {
        grep { ($_->{attrs}{'url.query'} // '') eq "case=$r->{case}" }
        $t->server_spans }, 1);
    return ($server) unless $server;
    my @clients = $t->wait_for(sub {
        grep { $_->{parent_id} eq $server->{span_id} } $t->client_spans }, 1, 2);
    return ($server, @clients);
}

# --- a valid context is continued ----------------------------------------

my $r = get('/api/raw-headers', [traceparent => $VALID],
            [tracestate => 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7']);
is($r->{status}, 200, 'valid: answered');

my ($server, @clients) = spans_of($r);
ok($server, 'valid: server span exported') or BAIL_OUT('no span');
is($server->{trace_id}, uuid($TRACE), 'valid: the incoming trace id');
is($server->{kind}, 'agent', 'valid: a span with a remote parent is an agent');
is($server->{parent_id}, $PARENT, 'valid: its parent is the incoming parent');
is(scalar @clients, 1, 'valid: one client span');

my @tp = received($r, 'traceparent');
is(scalar @tp, 1, 'valid: the backend got exactly one traceparent');
my ($v, $trace, $parent, $flags) = split /-/, $tp[0] // '';
is("$v-$trace", "00-$TRACE", 'valid: with the incoming trace id');
is($parent, $clients[0]{span_id},
   'valid: its parent is the exported upstream attempt');
is($clients[0]{trace_id}, uuid($TRACE), 'valid: attempt in the same trace');
is($flags, '01', 'valid: sampled flag sent');
is_deeply([received($r, 'tracestate')],
          ['congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'],
          'valid: tracestate forwarded unchanged');

# the variables say what was exported and sent
my $h = $r->{headers};
is($h->{'x-trace-id'}, $TRACE, '$vaquero_trace_id');
is($h->{'x-span-id'}, $server->{span_id}, '$vaquero_span_id');
is($h->{'x-parent-id'}, $PARENT, '$vaquero_parent_id');
is($h->{'x-traceparent'}, $tp[0], '$vaquero_traceparent is what was sent');
is($h->{'x-sampled'}, '1', '$vaquero_sampled');
is($h->{'x-sampled-word'}, 'yes', '$vaquero_sampled in a map');

# the random flag describes the trace id: kept when continued
$r = get('/api/raw-headers', [traceparent => "00-$TRACE-$PARENT-03"]);
($flags) = (received($r, 'traceparent'))[0] =~ /-(\w\w)$/;
is($flags, '03', 'random flag of the incoming trace kept');

# --- a higher version is read by the version-00 rules --------------------

for my $tp ("cc-$TRACE-$PARENT-01", "cc-$TRACE-$PARENT-01-what-the-future-holds")
{
    $r = get('/api/raw-headers', [traceparent => $tp]);
    ($server) = spans_of($r);
    is($server->{trace_id}, uuid($TRACE), "future version continued: $tp");
    my @sent = received($r, 'traceparent');
    like($sent[0], qr/^00-$TRACE-[0-9a-f]{16}-01$/,
         'and sent on as version 00');
}

# --- every invalid form starts a new trace, and is not forwarded ---------

my @invalid = (
    [ 'version ff', "ff-$TRACE-$PARENT-01" ],
    [ 'version not hex', "0x-$TRACE-$PARENT-01" ],
    [ 'upper case trace id', '00-' . uc($TRACE) . "-$PARENT-01" ],
    [ 'upper case parent id', "00-$TRACE-" . uc($PARENT) . '-01' ],
    [ 'all-zero trace id', '00-' . ('0' x 32) . "-$PARENT-01" ],
    [ 'all-zero parent id', "00-$TRACE-" . ('0' x 16) . '-01' ],
    [ 'short trace id', '00-' . substr($TRACE, 1) . "-$PARENT-01" ],
    [ 'long parent id', "00-$TRACE-${PARENT}0-01" ],
    [ 'illegal character', '00-' . substr($TRACE, 0, 31) . "g-$PARENT-01" ],
    [ 'bad flags', "00-$TRACE-$PARENT-0g" ],
    [ 'version 00 with more', "00-$TRACE-$PARENT-01-extra" ],
    [ 'future version, no dash after', "cc-$TRACE-$PARENT-01x" ],
    [ 'wrong separator', "00_$TRACE-$PARENT-01" ],
    [ 'empty', '' ],
    [ 'garbage', 'hello, world' ],
);

for my $c (@invalid) {
    my ($what, $tp) = @$c;
    $r = get('/api/raw-headers', [traceparent => $tp],
             [tracestate => 'congo=t61rcWkgMzE']);
    ($server, @clients) = spans_of($r);
    ok($server, "$what: traced") or next;
    is($server->{kind}, 'trace', "$what: a new trace, no parent");
    isnt(unuuid($server->{trace_id}), $TRACE, "$what: not the incoming id");
    my @sent = received($r, 'traceparent');
    is(scalar @sent, 1, "$what: one traceparent sent");
    is($sent[0], '00-' . unuuid($server->{trace_id}) . "-$clients[0]{span_id}-03",
       "$what: ours, naming the attempt, sampled and random");
    is_deeply([received($r, 'tracestate')], [], "$what: no tracestate");
}

# two traceparent headers: which one is the parent? neither
$r = get('/api/raw-headers', [traceparent => $VALID],
         [traceparent => "00-$TRACE-00f067aa0ba902b7-01"]);
($server) = spans_of($r);
is($server->{kind}, 'trace', 'duplicated traceparent: a new trace');
isnt(unuuid($server->{trace_id}), $TRACE, 'duplicated: not the incoming id');
is(scalar(received($r, 'traceparent')), 1, 'duplicated: one forwarded, ours');

# --- tracestate --------------------------------------------------------

$r = get('/api/raw-headers', [traceparent => $VALID],
         [tracestate => 'a=1,b=2'], [tracestate => 'c=3']);
is_deeply([received($r, 'tracestate')], ['a=1,b=2,c=3'],
          'several tracestate headers: one list, in order');

$r = get('/api/raw-headers', [traceparent => $VALID],
         [tracestate => join(',', map { "k$_=v" } 1 .. 32)]);
is_deeply([received($r, 'tracestate')], [join(',', map { "k$_=v" } 1 .. 32)],
          '32 members forwarded');

$r = get('/api/raw-headers', [traceparent => $VALID],
         [tracestate => join(',', map { "k$_=v" } 1 .. 33)]);
($server) = spans_of($r);
is($server->{trace_id}, uuid($TRACE), '33 members: trace continued');
is_deeply([received($r, 'tracestate')], [], '33 members: tracestate dropped');

$r = get('/api/raw-headers', [traceparent => $VALID], [tracestate => 'Bad=1']);
is_deeply([received($r, 'tracestate')], [], 'invalid key: tracestate dropped');

$r = get('/api/raw-headers', [tracestate => 'a=1']);
is_deeply([received($r, 'tracestate')], [],
          'tracestate without traceparent: dropped');

# --- modes ---------------------------------------------------------------

$r = get('/extract/raw-headers', [traceparent => $VALID], [tracestate => 'a=1']);
($server, @clients) = spans_of($r);
is($server->{trace_id}, uuid($TRACE), 'extract: the incoming trace');
is($server->{parent_id}, $PARENT, 'extract: the incoming parent');
is_deeply([received($r, 'traceparent')], [$VALID],
          'extract: the client\'s traceparent passes unchanged');
is_deeply([received($r, 'tracestate')], ['a=1'], 'extract: and its tracestate');

$r = get('/inject/raw-headers', [traceparent => $VALID], [tracestate => 'a=1']);
($server, @clients) = spans_of($r);
is($server->{kind}, 'trace', 'inject: a new trace');
isnt(unuuid($server->{trace_id}), $TRACE, 'inject: not the incoming one');
is_deeply([received($r, 'traceparent')],
          ['00-' . unuuid($server->{trace_id}) . "-$clients[0]{span_id}-03"],
          'inject: ours replaces the client\'s');
is_deeply([received($r, 'tracestate')], [], 'inject: no tracestate');

$r = get('/ignore/raw-headers', [traceparent => $VALID], [tracestate => 'a=1']);
($server) = spans_of($r);
is($server->{kind}, 'trace', 'ignore: a new trace');
isnt(unuuid($server->{trace_id}), $TRACE, 'ignore: not the incoming one');
is_deeply([received($r, 'traceparent')], [$VALID],
          'ignore: the client\'s traceparent passes unchanged');

$r = get('/ignore/raw-headers');
is_deeply([received($r, 'traceparent')], [], 'ignore: nothing added');

$r = get('/server-parent/raw-headers', [traceparent => $VALID]);
($server, @clients) = spans_of($r);
is(scalar @clients, 0, 'vaquero_upstream_spans off: no client span');
is_deeply([received($r, 'traceparent')],
          ["00-$TRACE-$server->{span_id}-01"],
          'vaquero_upstream_spans off: the parent is the server span');

$r = get('/set/raw-headers', [traceparent => $VALID]);
($server, @clients) = spans_of($r);
@tp = received($r, 'traceparent');
is(scalar @tp, 1, 'proxy_set_header traceparent $vaquero_traceparent: one');
is($tp[0], "00-$TRACE-$clients[0]{span_id}-01",
   'and it names the attempt too');
is_deeply([received($r, 'x-trace-id')], [$TRACE],
          '$vaquero_trace_id in proxy_set_header');

$r = get('/off/raw-headers', [traceparent => $VALID]);
is_deeply([received($r, 'traceparent')], [$VALID],
          'vaquero off: the client\'s traceparent passes untouched');
ok(!exists $r->{headers}{'x-trace-id'}, 'vaquero off: variables are empty');

# --- without a backend -----------------------------------------------------

$r = get('/local');
($server) = spans_of($r);
is($r->{body}, unuuid($server->{trace_id}) . " $server->{span_id} 1\n",
   'variables in "return" match the exported span');
ok(!exists $r->{headers}{'x-parent-id'}, '$vaquero_parent_id empty: no parent');

# --- the access log ------------------------------------------------------

$t->stop;

my %log = map { (split / /)[0] => $_ } split /\n/, $t->read_file('trace.log');
my @servers = $t->server_spans;
my $checked = 0;
for my $s (@servers) {
    my ($n) = ($s->{attrs}{'url.query'} // '') =~ /^case=(\d+)$/ or next;
    my $line = $log{$n} // next;
    my ($c, $tid, $sid, $pid, $tp, $sampled) = split / /, $line;
    $checked++ if $tid eq unuuid($s->{trace_id}) && $sid eq $s->{span_id}
                  && $pid eq '[' . ($s->{parent_id} // '') . ']'
                  && $sampled eq '1';
}
is($checked, scalar(grep { ($_->{attrs}{'url.query'} // '') =~ /^case=/ }
                   @servers),
   'access log: every line has the exported ids');

is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

#!/usr/bin/perl

# A client span per upstream attempt: retries after a refused connection,
# a 502 and a timeout each show every attempt, and the backend's parent is
# the attempt that reached it.  Subrequests (auth_request, mirror) that
# reach an upstream are in the main request's trace; internal redirects,
# HTTP/2 and an upstream resolved at run time too.  And the FastAPI app's
# own span joins the trace: its parent is an exported nginx span.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use IO::Socket::INET;
use lib 't/lib';
use VaqueroTest qw(http http_get);

my $t = VaqueroTest->new;

# a port that accepts connections (the kernel does, into the backlog) and
# never answers: an upstream that times out
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                   Listen => 16, ReuseAddr => 1)
    or die "listen: $!";
my $silent_port = $silent->sockport;

# a port nothing listens on: connections are refused
my $closed_port = $t->closed_port('closed');

$t->write_config(<<"CONF");
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_flush_interval 50ms;

    upstream app {
        server 127.0.0.1:%%PORT_backend%%;
        keepalive 4;
    }

    # the first server always tried first (max_fails=0 keeps it "up"),
    # the app only when it fails
    upstream refused {
        server 127.0.0.1:$closed_port max_fails=0;
        server 127.0.0.1:%%PORT_backend%% backup;
    }

    upstream bad_gateway {
        server 127.0.0.1:%%PORT_bad%% max_fails=0;
        server 127.0.0.1:%%PORT_backend%% backup;
    }

    upstream silent {
        server 127.0.0.1:$silent_port max_fails=0;
        server 127.0.0.1:%%PORT_backend%% backup;
    }

    server {
        listen 127.0.0.1:%%PORT_bad%%;
        vaquero off;
        location / {
            return 502;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_http%%;
        listen 127.0.0.1:%%PORT_h2%% http2;
        vaquero on;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /api/ {
            proxy_pass http://app;
        }

        location /refused/ {
            proxy_pass http://refused/api/;
        }

        location /bad-gateway/ {
            proxy_next_upstream error http_502;
            proxy_pass http://bad_gateway/api/;
        }

        location /silent/ {
            proxy_read_timeout 300ms;
            proxy_pass http://silent/api/;
        }

        location /dead/ {
            proxy_next_upstream off;
            proxy_pass http://127.0.0.1:$closed_port/api/;
        }

        location /protected/ {
            auth_request /auth;
            proxy_pass http://app/api/;
        }

        location = /auth {
            internal;
            proxy_pass http://app/api/items/1;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }

        location /mirrored/ {
            mirror /mirror;
            proxy_pass http://app/api/;
        }

        location = /mirror {
            internal;
            proxy_pass http://app/api/items/3;
        }

        location /redirected/ {
            error_page 404 = \@fallback;
            return 404;
        }

        location \@fallback {
            rewrite ^ /api/items/2 break;
            proxy_pass http://app;
        }

        location /resolved/ {
            set \$backend 127.0.0.1:%%PORT_backend%%;
            proxy_pass http://\$backend/api/items/1;
        }

        location /rewritten/ {
            rewrite ^/rewritten/(.*)\$ /api/\$1 last;
        }

        location = /page.html {
            ssi on;
            ssi_types *;
            root %%TESTDIR%%;
        }
    }
}
CONF
$t->write_file('page.html', "<p><!--# include virtual=\"/api/items/1\" --></p>"
               . "<p><!--# include virtual=\"/api/items/2\" --></p>\n");
$t->start_collector->start_backend(report => 1)
  ->run(wait_ports => ['http', 'h2']);
my $port = $t->port('http');

sub uuid_hex { (my $h = $_[0]) =~ s/-//g; return $h }

# the server span of the request whose path is $path, and its client spans
sub trace_of {
    my ($path, $nclients) = @_;
    my ($server) = $t->wait_for(sub {
        grep { $_->{attrs}{'url.path'} eq $path } $t->server_spans }, 1);
    return unless $server;
    my @clients = sort { $a->{attrs}{attempt} <=> $b->{attrs}{attempt}
                         || $a->{start_time} cmp $b->{start_time} }
                  $t->wait_for(sub {
                      grep { $_->{parent_id} eq $server->{span_id} }
                      $t->client_spans }, $nclients // 1, 3);
    return ($server, @clients);
}

# the app's span for a request, by the traceparent it received
sub app_span {
    my ($trace_id, $parent) = @_;
    my ($s) = $t->wait_for(sub {
        grep { $_->{source} eq 'app' && $_->{trace_id} eq $trace_id
               && ($_->{parent_id} // '') eq $parent } $t->spans }, 1);
    return $s;
}

# --- one attempt, and the FastAPI app's span under it ----------------------

like(http_get($port, '/api/items/1'), qr/^HTTP\/1.1 200/, 'proxied');
my ($server, @clients) = trace_of('/api/items/1');
is(scalar @clients, 1, 'one attempt, one client span');
my $c = $clients[0];
is($c->{trace_id}, $server->{trace_id}, 'client span in the trace');
is($c->{status}, 'completed', 'attempt completed');
is($c->{raw_data}{span_kind}, 'client', 'kind client');
is($c->{attrs}{status_code}, 200, 'upstream status');
is($c->{attrs}{host}, '127.0.0.1', 'peer address');
is($c->{attrs}{server_port}, $t->port('backend'), 'peer port');
is($c->{attrs}{upstream}, 'app', 'upstream name');
is($c->{attrs}{method}, 'GET', 'method');
ok($c->{attrs}{bytes_sent} > 0, 'bytes sent');
ok($c->{attrs}{bytes_received} > 0, 'bytes received');
ok(defined $c->{attrs}{connect_time_ms}, 'connect time');
ok(defined $c->{attrs}{header_time_ms}, 'header time');
ok($c->{start_time} ge $server->{start_time}
   && $c->{end_time} le $server->{end_time}, 'inside the server span');

my $app = app_span($server->{trace_id}, $c->{span_id});
ok($app, 'the FastAPI span joins the trace, child of the attempt')
    or diag(explain [grep { $_->{source} eq 'app' } $t->spans]);
like($app->{attrs}{traceparent_received} // '',
     qr/^00-${\ uuid_hex($server->{trace_id})}-$c->{span_id}-0[13]$/,
     'it received the traceparent naming the attempt');

# --- retries: one client span per attempt ----------------------------------

like(http_get($port, '/refused/items/2'), qr/^HTTP\/1.1 200/,
     'refused, then the backup answered');
($server, @clients) = trace_of('/refused/items/2', 2);
is(scalar @clients, 2, 'refused: two attempts');
is($clients[0]{status}, 'failed', 'refused: first failed');
is($clients[0]{error_type}, 'connect_error', 'refused: connect error');
is($clients[0]{attrs}{server_port}, $closed_port, 'refused: the dead peer');
is($clients[0]{attrs}{attempt}, 1, 'refused: attempt 1');
is($clients[1]{status}, 'completed', 'refused: second completed');
is($clients[1]{attrs}{attempt}, 2, 'refused: attempt 2');
is($clients[1]{attrs}{status_code}, 200, 'refused: 200 from the backup');
isnt($clients[0]{span_id}, $clients[1]{span_id}, 'refused: two span ids');
ok(app_span($server->{trace_id}, $clients[1]{span_id}),
   'refused: the backend\'s parent is the attempt that reached it');

like(http_get($port, '/bad-gateway/items/2'), qr/^HTTP\/1.1 200/,
     '502, then the backup answered');
($server, @clients) = trace_of('/bad-gateway/items/2', 2);
is(scalar @clients, 2, '502: two attempts');
is($clients[0]{error_type}, 'HTTPError', '502: an HTTP error');
is($clients[0]{attrs}{status_code}, 502, '502: upstream status');
is($clients[1]{attrs}{status_code}, 200, '502: then 200');
ok(app_span($server->{trace_id}, $clients[1]{span_id}),
   '502: the backend\'s parent is the second attempt');

like(http_get($port, '/silent/items/2'), qr/^HTTP\/1.1 200/,
     'timeout, then the backup answered');
($server, @clients) = trace_of('/silent/items/2', 2);
is(scalar @clients, 2, 'timeout: two attempts');
is($clients[0]{error_type}, 'timeout', 'timeout: timed out');
ok(defined $clients[0]{attrs}{connect_time_ms}, 'timeout: it had connected');
ok(!defined $clients[0]{attrs}{header_time_ms}, 'timeout: no header');
ok(app_span($server->{trace_id}, $clients[1]{span_id}),
   'timeout: the backend\'s parent is the second attempt');

like(http_get($port, '/dead/items/2'), qr/^HTTP\/1.1 502/, 'no retry: 502');
($server, @clients) = trace_of('/dead/items/2');
is(scalar @clients, 1, 'no retry: one attempt');
is($clients[0]{error_type}, 'connect_error', 'no retry: refused');
is($server->{status}, 'failed', 'no retry: the server span failed (502)');

# --- subrequests -------------------------------------------------------------

like(http_get($port, '/protected/items/3'), qr/^HTTP\/1.1 200/,
     'auth_request allowed');
($server, @clients) = trace_of('/protected/items/3', 2);
is(scalar @clients, 2, 'auth_request: its call and the main one');
my %by_port_path;
is(scalar(grep { $_->{trace_id} eq $server->{trace_id} } @clients), 2,
   'auth_request: both in the main request\'s trace');
my @apps = $t->wait_for(sub {
    grep { $_->{source} eq 'app' && $_->{trace_id} eq $server->{trace_id} }
    $t->spans }, 2);
is(scalar @apps, 2, 'auth_request: the app saw two calls in the trace');
my %client_ids = map { $_->{span_id} => 1 } @clients;
is(scalar(grep { $client_ids{ $_->{parent_id} } } @apps), 2,
   'auth_request: each under its own attempt');

like(http_get($port, '/mirrored/items/1'), qr/^HTTP\/1.1 200/, 'mirrored');
($server, @clients) = trace_of('/mirrored/items/1', 2);
is(scalar @clients, 2, 'mirror: the mirror\'s call and the main one');
@apps = $t->wait_for(sub {
    grep { $_->{source} eq 'app' && $_->{trace_id} eq $server->{trace_id} }
    $t->spans }, 2);
is(scalar @apps, 2, 'mirror: both reached the app in the same trace');
%client_ids = map { $_->{span_id} => 1 } @clients;
is(scalar(grep { $client_ids{ $_->{parent_id} } } @apps), 2,
   'mirror: each under its own attempt');

# --- one server span whatever happens inside ---------------------------------

like(http_get($port, '/redirected/x'), qr/^HTTP\/1.1 200/,
     'error_page to a named location that proxies');
($server, @clients) = trace_of('/redirected/x');
is(scalar(grep { $_->{attrs}{'url.path'} eq '/redirected/x' }
          $t->server_spans), 1, 'redirect: one server span');
is(scalar @clients, 1, 'redirect: its attempt');
ok(app_span($server->{trace_id}, $clients[0]{span_id}),
   'redirect: the app joined');

like(http_get($port, '/rewritten/items/3'), qr/^HTTP\/1.1 200/,
     'rewrite ... last into a proxied location');
($server, @clients) = trace_of('/rewritten/items/3');
is(scalar(grep { $_->{attrs}{'url.path'} eq '/rewritten/items/3' }
          $t->server_spans), 1, 'rewrite: one server span');
is($server->{attrs}{route}, '/api/', 'rewrite: where the request ended');
is(scalar @clients, 1, 'rewrite: its attempt');
ok(app_span($server->{trace_id}, $clients[0]{span_id}),
   'rewrite: the app joined');

my $ssi = http_get($port, '/page.html');
like($ssi, qr/"lasso".*"saddle"/s, 'SSI: two includes answered by the app');
($server, @clients) = trace_of('/page.html', 2);
is(scalar(grep { $_->{attrs}{'url.path'} eq '/page.html' } $t->server_spans),
   1, 'SSI: one server span for the page');
is(scalar @clients, 2, 'SSI: a client span per include');
%client_ids = map { $_->{span_id} => 1 } @clients;
@apps = $t->wait_for(sub {
    grep { $_->{source} eq 'app' && $_->{trace_id} eq $server->{trace_id} }
    $t->spans }, 2);
is(scalar(grep { $client_ids{ $_->{parent_id} } } @apps), 2,
   'SSI: each include\'s backend span under its attempt');

# --- an upstream resolved at run time --------------------------------------

like(http_get($port, '/resolved/x'), qr/^HTTP\/1.1 200/, 'proxy_pass $var');
($server, @clients) = trace_of('/resolved/x');
is(scalar @clients, 1, 'resolved at run time: a client span');
is($clients[0]{attrs}{server_port}, $t->port('backend'), 'resolved: peer');
ok(app_span($server->{trace_id}, $clients[0]{span_id}),
   'resolved: the backend\'s parent is exported');

# --- HTTP/2 ------------------------------------------------------------------

SKIP: {
    my $curl = `curl --version 2>/dev/null`;
    skip 'curl without HTTP/2', 4 unless $curl =~ /HTTP2/;

    my $out = `curl -s --http2-prior-knowledge -o /dev/null -w '%{http_version} %{http_code}' http://127.0.0.1:${\ $t->port('h2')}/api/items/2`;
    is($out, '2 200', 'HTTP/2 request proxied');
    my @h2 = $t->wait_for(sub {
        grep { $_->{attrs}{http_version} eq '2' } $t->server_spans }, 1);
    ($server) = @h2;
    ok($server, 'HTTP/2: server span');
    ($server, @clients) = trace_of($server->{attrs}{'url.path'});
    is(scalar @clients, 1, 'HTTP/2: client span');
    ok(app_span($server->{trace_id}, $clients[0]{span_id}),
       'HTTP/2: the app joined');
}

$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

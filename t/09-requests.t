#!/usr/bin/perl

# One server span per main request, whatever nginx does with it: internal
# redirects (error_page, try_files, named locations) and subrequests
# (auth_request, with log_subrequest on) add none.  Odd and hostile input
# (HTTP/0.9, a bad request line, bytes that are not UTF-8, NUL-free control
# bytes, a URI too long for a record, HTTP/2) still gives valid JSON and a
# worker that lives on.

use strict;
use warnings;

use Test::More;
binmode(Test::More->builder->$_, ":utf8") for qw(output failure_output todo_output);
use Time::HiRes qw(sleep);
use lib 't/lib';
use VaqueroTest qw(http http_get);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_flush_interval 100ms;
    log_subrequest on;
    large_client_header_buffers 4 16k;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        listen 127.0.0.1:%%PORT_h2%% http2;
        server_name localhost;
        root %%TESTDIR%%;
        vaquero on;

        location /err {
            error_page 404 = @fallback;
            return 404;
        }

        location @fallback {
            return 200 "fallback\n";
        }

        location /try {
            try_files /nonexistent /final;
        }

        location = /final {
            return 200 "final\n";
        }

        location /protected {
            auth_request /auth;
            return 200 "allowed\n";
        }

        location = /auth {
            return 204;
        }

        location /hostile {
            vaquero_span_name $http_x_span_name;
            return 200 "ok\n";
        }

        location / {
            return 200 "ok\n";
        }
    }
}
CONF
$t->start_collector->run(wait_ports => ['http', 'h2']);
my $port = $t->port('http');

like(http_get($port, '/err'), qr/fallback/, 'error_page to a named location');
like(http_get($port, '/try'), qr/final/, 'try_files to another location');
like(http_get($port, '/protected'), qr/allowed/, 'auth_request subrequest');

my @spans = $t->wait_spans(3);
sleep 0.5;
@spans = $t->spans;
is(scalar @spans, 3, 'three requests, three spans: no redirect or subrequest adds one');

my %by = map { $_->{raw_data}{attributes}{'url.path'} => $_ } @spans;
is($by{'/err'}{raw_data}{attributes}{route}, '@fallback',
   'error_page: the span describes where the request ended');
is($by{'/err'}{raw_data}{attributes}{status_code}, 200, 'error_page status');
is($by{'/try'}{raw_data}{attributes}{route}, '/final', 'try_files route');
is($by{'/try'}{raw_data}{attributes}{'url.path'}, '/try',
   'url.path is what the client asked for');
is($by{'/protected'}{raw_data}{attributes}{route}, '/protected',
   'auth_request: the main request only');

# hostile and odd input

$t->clear_collected;

like(http($port, "GET /zero-nine\r\n"), qr/ok/, 'HTTP/0.9 request');
like(http($port, "GET /bad path HTTP/1.1\r\nHost: x\r\n\r\n"), qr/400/,
     'bad request line');
like(http($port, "GET /caf\xc3\xa9/\xff\xfe?q=\xc0\xaf HTTP/1.0\r\n"
                 . "User-Agent: agent \xff\x80 \x01\x1f end\r\n\r\n"),
     qr/ok/, 'bytes that are not UTF-8, control bytes');
my $long = '/long/' . ('a' x 3000);
like(http_get($port, $long), qr/ok/, 'a 3000-byte URI');

# DESIGN 6: long values have caps, the short identifying fields always fit
like(http($port, "GET /hostile?q=" . ('q' x 4000) . " HTTP/1.1\r\n"
                 . "Host: edge.example\r\nConnection: close\r\n"
                 . "User-Agent: " . ('u' x 4000) . "\r\n"
                 . "X-Span-Name: " . ('n' x 4000) . "\r\n\r\n"),
     qr/ok/, '4 KB query, user agent and span name');

my $h2 = `curl -s --http2-prior-knowledge http://127.0.0.1:${\ $t->port('h2')}/over-h2 2>&1`;
is($h2, "ok\n", 'HTTP/2 request');

my @req;
for (1 .. 100) {
    @req = $t->collected;
    my $n = 0;
    $n += @{ $_->{json}{traces} } for grep { $_->{json} } @req;
    last if $n >= 6;
    sleep 0.1;
}

is(scalar(grep { !$_->{json} } @req), 0, 'every body was valid JSON')
    or diag(map { $_->{json_error} } @req);

@spans = $t->spans;
%by = map { substr($_->{raw_data}{attributes}{'url.path'} // '', 0, 10) => $_ }
      @spans;

is($by{'/zero-nine'}{raw_data}{attributes}{http_version}, '0.9', 'HTTP/0.9');

my ($bad) = grep { $_->{raw_data}{attributes}{status_code} == 400 } @spans;
ok($bad, 'the bad request has a span too');
like($bad->{name}, qr/^(HTTP|GET)( \S+)?$/, 'and a sensible name: ' . $bad->{name});

my $odd = $by{"/caf\x{e9}/\x{fffd}\x{fffd}"};
ok($odd, 'non-UTF-8 path bytes arrive as U+FFFD, valid UTF-8 as itself');
is($odd->{raw_data}{attributes}{'url.query'}, "q=\x{fffd}\x{fffd}",
   'overlong encoding replaced');
is($odd->{raw_data}{attributes}{user_agent},
   "agent \x{fffd}\x{fffd} \x01\x1f end", 'user agent: repaired, controls escaped');

my $l = $by{'/long/aaaa'};
ok($l, 'long URI traced');
is($l->{tags}{'vaquero.truncated'}, 'true', 'marked as truncated');
ok(length($l->{raw_data}{attributes}{'url.path'}) < 3006, 'and cut short');

my $hostile = $by{'/hostile'};
ok($hostile, 'the hostile request traced');
my $ha = $hostile->{raw_data}{attributes};
is($ha->{method}, 'GET', 'hostile: method intact');
is($ha->{route}, '/hostile', 'hostile: route intact');
is($ha->{status_code}, 200, 'hostile: status intact');
is($ha->{client_ip}, '127.0.0.1', 'hostile: client intact');
is($ha->{host}, 'edge.example', 'hostile: host intact');
is($ha->{http_version}, '1.1', 'hostile: protocol intact');
like($ha->{request_id}, qr/^[0-9a-f]{32}$/, 'hostile: request id intact');
is($hostile->{tags}{'vaquero.truncated'}, 'true', 'hostile: cut, and says so');
ok(length($ha->{'url.query'}) > 0 && length($ha->{'url.query'}) < 4000,
   'hostile: query cut short, not emptied');
like($hostile->{name}, qr/^n+$/, 'hostile: span name cut short');
ok(length($ha->{user_agent}) > 0, 'hostile: user agent cut short');

is($by{'/over-h2'}{raw_data}{attributes}{http_version}, '2', 'HTTP/2 version');
is($by{'/over-h2'}{raw_data}{attributes}{status_code}, 200, 'HTTP/2 status');

my @w = $t->workers;
is(scalar @w, 1, 'the worker lives on');
$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

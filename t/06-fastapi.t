#!/usr/bin/perl

# nginx with the module in front of a real FastAPI app under uvicorn:
# proxied GET and POST with bodies, the app's 200/201/404/500 answers,
# and the spans that describe them.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use VaqueroTest qw(http_get http_post);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 2;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_mode development;
    vaquero_flush_interval 100ms;

    upstream fastapi {
        server 127.0.0.1:%%PORT_backend%%;
        keepalive 4;
    }

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;

        location /api/ {
            vaquero_agent_name fastapi-proxy;
            proxy_pass http://fastapi;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
$t->start_collector->start_backend->run(wait_ports => ['http']);

my $port = $t->port('http');

my $r = http_get($port, '/api/items/2', 'User-Agent' => 'vaquero-test');
like($r, qr/^HTTP\/1.1 200.*"saddle"/s, 'GET through nginx to FastAPI');

my $body = encode_json({ name => 'rope', length => 30 });
$r = http_post($port, '/api/items', $body, 'Content-Type' => 'application/json');
like($r, qr/^HTTP\/1.1 201.*"received_bytes":\s*${\ length $body}/s,
     'POST body reached the app');

like(http_get($port, '/api/items/99'), qr/^HTTP\/1.1 404/, 'app 404');
like(http_get($port, '/api/boom'), qr/^HTTP\/1.1 500/, 'app 500');

my @spans = $t->wait_for(sub { $t->server_spans }, 4);
is(scalar @spans, 4, 'four server spans');

my %by = map { $_->{raw_data}{attributes}{'url.path'} => $_ } @spans;

# and one client span each, for the one upstream attempt
my @clients = $t->wait_for(sub { $t->client_spans }, 4);
is(scalar @clients, 4, 'four client spans');
my %client = map { $_->{parent_id} => $_ } @clients;
for my $path (sort keys %by) {
    my $c = $client{ $by{$path}{span_id} };
    ok($c, "$path: a client span, child of the server span") or next;
    is($c->{trace_id}, $by{$path}{trace_id}, "$path: same trace");
    is($c->{attrs}{status_code}, $by{$path}{attrs}{status_code},
       "$path: upstream status");
    is($c->{attrs}{attempt}, 1, "$path: attempt 1");
    is($c->{name}, 'fastapi', "$path: agent name is the upstream's");
    is($c->{attrs}{server_port}, $t->port('backend'), "$path: peer port");
}

my $get = $by{'/api/items/2'};
is($get->{name}, 'GET /api/', 'span name');
is($get->{raw_data}{metadata}{agent_name}, 'fastapi-proxy', 'agent name');
is($get->{environment}, 'development', 'development mode');
is($get->{raw_data}{attributes}{status_code}, 200, 'GET status');
is($get->{raw_data}{attributes}{route}, '/api/', 'route');
is($get->{raw_data}{attributes}{user_agent}, 'vaquero-test', 'user agent');
my ($get_body) = $r =~ /\r\n\r\n(.*)$/s;
ok($get->{raw_data}{attributes}{response_size_bytes} > 0, 'response size');
ok($get->{duration_ms} >= 0, 'duration');

my $post = $by{'/api/items'};
is($post->{raw_data}{attributes}{method}, 'POST', 'POST method');
is($post->{raw_data}{attributes}{status_code}, 201, 'POST status');
is($post->{raw_data}{attributes}{request_size_bytes}, length $body,
   'POST body size');
is($post->{raw_data}{attributes}{content_type}, 'application/json',
   'POST content type');
is($post->{status}, 'completed', 'POST completed');

is($by{'/api/items/99'}{raw_data}{attributes}{status_code}, 404, '404 from the app');
is($by{'/api/items/99'}{status}, 'completed', '404 is not an error');
is($by{'/api/boom'}{raw_data}{attributes}{status_code}, 500, '500 from the app');
is($by{'/api/boom'}{status}, 'failed', '500 is an error');
is($by{'/api/boom'}{error_count}, 1, '500 error_count');

# a chunked request body is counted too
$r = VaqueroTest::http($port, "POST /api/items HTTP/1.1\r\nHost: localhost\r\n"
    . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    . "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
like($r, qr/"received_bytes":\s*11/, 'chunked POST reached the app');
@spans = $t->wait_for(sub { $t->server_spans }, 5);
my ($chunked) = grep { $_->{raw_data}{attributes}{http_version} eq '1.1'
                       && $_->{raw_data}{attributes}{method} eq 'POST' } @spans;
ok($chunked && $chunked->{raw_data}{attributes}{request_size_bytes} >= 11,
   'chunked body size counted (framing included)');

$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

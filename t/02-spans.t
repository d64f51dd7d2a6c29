#!/usr/bin/perl

# One server span per request, with every attribute of DESIGN section 6,
# for GET and POST with bodies and 200/404/500 answers; "vaquero off"
# exports nothing; custom names and attributes; the batch request itself.

use strict;
use warnings;

use Test::More;
use Time::HiRes ();
use Time::Local qw(timegm);
use lib 't/lib';
use VaqueroTest qw(http http_get http_post);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF')->start_collector->run(wait_ports => ['http']);
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%/base/;
    vaquero_api_key test-key-123;
    vaquero_project_id proj-42;
    vaquero_service_name edge-test;
    vaquero_batch_size 4;
    vaquero_flush_interval 100ms;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        server_name localhost;

        vaquero on;

        location / {
            return 200 "hello\n";
        }

        location = /missing {
            return 404;
        }

        location /fail {
            return 500;
        }

        location /quiet {
            vaquero off;
            return 200 "not traced\n";
        }

        location /custom {
            vaquero_span_name "custom $request_method $arg_x";
            vaquero_agent_name checkout-agent;
            vaquero_attribute user.id $arg_user;
            vaquero_attribute fixed constant;
            return 201 "created\n";
        }

        location /byvar {
            vaquero $arg_trace;
            return 200 "maybe\n";
        }
    }
}
CONF

my $port = $t->port('http');

my $before = Time::HiRes::time();
like(http_get($port, '/index?a=1&b=two', 'User-Agent' => 'probe/1.0'),
     qr/^HTTP\/1.1 200.*hello/s, 'GET answered');
my $after = Time::HiRes::time();
like(http_post($port, '/upload', 'x' x 1234,
               'Content-Type' => 'application/json'),
     qr/^HTTP\/1.1 200/, 'POST answered');
like(http_get($port, '/missing'), qr/^HTTP\/1.1 404/, '404 answered');
like(http_post($port, '/fail/now', 'abc'), qr/^HTTP\/1.1 500/, '500 answered');
like(http_get($port, '/quiet'), qr/not traced/, 'untraced location answered');
like(http_get($port, '/custom?x=42&user=u-7'), qr/^HTTP\/1.1 201/, 'custom');
like(http_get($port, '/custom2?x=1'), qr/^HTTP\/1.1 201/, 'custom, no user');
http_get($port, '/byvar?trace=0');
http_get($port, '/byvar');
http_get($port, '/byvar?trace=yes');

my @spans = $t->wait_spans(7);
sleep 0.5;
@spans = $t->spans;
is(scalar @spans, 7, 'seven spans: not /quiet, not /byvar without trace');

my %by_path = map { $_->{raw_data}{attributes}{'url.path'} => $_ } @spans;
ok(!$by_path{'/quiet'}, 'vaquero off exports nothing');
is(scalar(grep { $_->{raw_data}{attributes}{'url.path'} eq '/byvar' } @spans),
   1, 'vaquero $var traces when the value is non-empty and not "0"');

# a GET, attribute by attribute

my $get = $by_path{'/index'};
my $a = $get->{raw_data}{attributes};

is($get->{kind}, 'trace', 'a span without a parent is a traces[] item');
like($get->{trace_id},
     qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
     'trace_id is a UUID of the 128-bit id');
isnt($get->{trace_id}, '00000000-0000-0000-0000-000000000000', 'not zero');
like($get->{raw_data}{metadata}{span_id}, qr/^[0-9a-f]{16}$/, 'span id');
is($get->{raw_data}{metadata}{parent_span_id}, undef, 'no parent');
is($get->{raw_data}{metadata}{agent_name}, '/', 'agent name: location name');
is($get->{raw_data}{metadata}{service_name}, 'edge-test', 'service name');
is($get->{raw_data}{metadata}{project_id}, 'proj-42', 'project id');
is($get->{name}, 'GET /', 'span name: method and location');
is($get->{status}, 'completed', 'status completed');
is($get->{error_count}, 0, 'no error');
is($get->{environment}, 'production', 'environment from mode');
is($get->{sdk_version}, '0.1.0', 'sdk version');
ok(length $get->{hostname}, 'hostname');
like($get->{start_time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/,
     'start_time ISO-8601 with microseconds');
like($get->{end_time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/,
     'end_time');
ok($get->{end_time} ge $get->{start_time}, 'ends after it starts');

# the wall clock (the span's start is the monotonic clock plus an offset
# nginx reads again each millisecond): within the test's own readings
my ($year, $mon, $day, $hour, $min, $sec) =
    $get->{start_time} =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):([\d.]+)Z$/;
my $start = timegm(0, $min, $hour, $day, $mon - 1, $year) + $sec;
ok($start >= $before - 0.002 && $start <= $after + 0.002,
   sprintf('start_time is the wall clock: %.6f within [%.6f, %.6f]',
           $start, $before, $after));
like($get->{duration_ms}, qr/^\d+$/, 'duration_ms integer');

is($a->{method}, 'GET', 'method');
is($a->{url}, "http://localhost:$port/index?a=1&b=two", 'url');
is($a->{'url.path'}, '/index', 'url.path');
is($a->{'url.query'}, 'a=1&b=two', 'url.query');
is($a->{'url.scheme'}, 'http', 'url.scheme');
is($a->{route}, '/', 'route');
is($a->{status_code}, 200, 'status_code');
is($a->{request_size_bytes}, 0, 'request_size_bytes');
is($a->{response_size_bytes}, 6, 'response_size_bytes');
is($a->{user_agent}, 'probe/1.0', 'user_agent');
ok(!exists $a->{content_type}, 'no content_type without the header');
is($a->{client_ip}, '127.0.0.1', 'client_ip');
like($a->{client_port}, qr/^\d+$/, 'client_port');
ok($a->{client_port} > 0 && $a->{client_port} != $port, 'client port value');
is($a->{host}, 'localhost', 'host');
is($a->{server_port}, $port, 'server_port');
is($a->{http_version}, '1.0', 'http_version');
like($a->{request_id}, qr/^[0-9a-f]{32}$/, 'request_id');
ok($a->{response_time_ms} >= 0 && $a->{response_time_ms} < 10000,
   'response_time_ms');

# a POST with a body

my $post = $by_path{'/upload'}{raw_data}{attributes};
is($post->{method}, 'POST', 'POST method');
is($post->{request_size_bytes}, 1234, 'POST request_size_bytes');
is($post->{content_type}, 'application/json', 'POST content_type');
is($post->{status_code}, 200, 'POST status');

# 404 is not an error, 500 is

my $nf = $by_path{'/missing'};
is($nf->{raw_data}{attributes}{status_code}, 404, '404 status_code');
is($nf->{status}, 'completed', '404 is not an error');
is($nf->{name}, 'GET /missing', '404 span name');
is($nf->{raw_data}{attributes}{route}, '/missing', 'exact location route');

my $err = $by_path{'/fail/now'};
is($err->{raw_data}{attributes}{status_code}, 500, '500 status_code');
is($err->{status}, 'failed', '500 is an error');
is($err->{error_count}, 1, '500 error_count');
is($err->{raw_data}{attributes}{request_size_bytes}, 3, '500 POST body size');

# custom name, agent name and attributes

my $c = $by_path{'/custom'};
is($c->{name}, 'custom GET 42', 'vaquero_span_name');
is($c->{raw_data}{metadata}{agent_name}, 'checkout-agent',
   'vaquero_agent_name');
is_deeply($c->{tags}, { 'user.id' => 'u-7', fixed => 'constant' },
          'vaquero_attribute');
is($c->{raw_data}{attributes}{status_code}, 201, 'custom status');
is_deeply($by_path{'/custom2'}{tags}, { fixed => 'constant' },
          'an attribute whose value is empty is left out');
is_deeply($by_path{'/index'}{tags}, {}, 'no tags where none are set');

# the requests themselves

my @req = $t->collected;
ok(@req >= 2, 'at least two batches with batch size 4');
for my $r (@req) {
    is($r->{method}, 'POST', 'batch is a POST');
    is($r->{path}, '/base/api/v1/traces/batch', 'batch path');
    is($r->{headers}{authorization}, 'Bearer test-key-123', 'Authorization');
    is($r->{headers}{'x-project-id'}, 'proj-42', 'X-Project-ID');
    is($r->{headers}{'content-type'}, 'application/json', 'Content-Type');
    is($r->{headers}{'user-agent'}, 'ngx_vaquero_module/0.1.0', 'User-Agent');
    ok($r->{json}, 'body is JSON') or diag($r->{json_error});
    is_deeply([sort keys %{ $r->{json} }], [qw(agents dependencies traces)],
              'body keys');
    ok(@{ $r->{json}{traces} } <= 4, 'no more spans than the batch size');
}

my %ids;
$ids{ $_->{raw_data}{metadata}{span_id} }++ for @spans;
is(scalar keys %ids, 7, 'span ids unique');

$t->stop;
is(join("\n", $t->alerts), '', 'no alerts in error.log');
unlike($t->error_log, qr/test-key-123/, 'the API key is never logged');

done_testing();

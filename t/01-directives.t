#!/usr/bin/perl

# Every directive is accepted with a good value, and a bad one fails
# "nginx -t" with a message that names the directive, file and line.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use VaqueroTest qw(http_get);

my $t = VaqueroTest->new;

$t->write_file('key.txt', "  file-key-789 \n# comment\n");
$t->write_file('empty.txt', "\n");
$t->write_file('cert.pem', "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");

sub conf {
    my ($http, $loc) = @_;
    $loc //= 'vaquero on;';
    return <<"CONF";
%%TEST_GLOBALS%%
events { }
http {
    %%TEST_GLOBALS_HTTP%%
$http
    server {
        listen 127.0.0.1:%%PORT_http%%;
        location / {
            $loc
        }
    }
}
CONF
}

sub nginx_t {
    my ($http, $loc) = @_;
    $t->write_config(conf($http, $loc));
    return $t->test_config;
}

# every directive, good values

my ($rc, $out) = nginx_t(<<'HTTP', <<'LOC');
    vaquero_endpoint http://127.0.0.1:9/base;
    vaquero_api_key_file key.txt;
    vaquero_project_id p-1;
    vaquero_service_name api-edge;
    vaquero_mode development;
    vaquero_batch_size 50;
    vaquero_flush_interval 500ms;
    vaquero_queue_size 1m;
    vaquero_export_timeout 2s;
    vaquero_shutdown_timeout 1s;
    vaquero_agent_name edge;
    vaquero_span_name "$request_method $uri";
    vaquero_attribute tenant $http_x_tenant;
    vaquero_protocol otlp_json;
    vaquero_resource_attribute service.version 1.2.3;
    vaquero_resource_attribute deployment.region "eu west";
    vaquero_export_header X-Scope-OrgID tenant-1;
    vaquero_export_header X-Empty "";
    vaquero_gzip on;
    vaquero_ssl_verify off;
    vaquero_ssl_trusted_certificate cert.pem;
    vaquero_ssl_certificate cert.pem;
    vaquero_ssl_certificate_key cert.pem;
HTTP
            vaquero $http_x_trace;
            vaquero_agent_name loc-agent;
            vaquero_span_name "x $uri";
            vaquero_attribute a 1;
            vaquero_attribute b $remote_addr;
            vaquero_trace_context extract;
            vaquero_upstream_spans off;
            vaquero_sample_rate 0.25;
            vaquero_sample_key $http_x_user_id;
            vaquero_sample_parent off;
            vaquero_sample_errors off;
            vaquero_sample_slow 500ms;
LOC
is($rc, 0, 'every directive accepted') or diag($out);

($rc, $out) = nginx_t("vaquero_api_key k;\n vaquero on;", 'vaquero off;');
is($rc, 0, 'vaquero at http level, off in a location') or diag($out);

# endpoints nginx -t takes, with the check the exporter makes

for my $ep ('HTTPS://collector.example', 'Http://127.0.0.1:4318/base/',
            'https://[::1]:4318', 'http://h:65535/a/b') {
    ($rc, $out) = nginx_t("vaquero_endpoint $ep;");
    is($rc, 0, "endpoint $ep accepted") or diag($out);
}

# a file endpoint: nginx -t creates the file, for its owner only
($rc, $out) = nginx_t('vaquero_endpoint file:%%TESTDIR%%/spans.jsonl;');
is($rc, 0, 'file endpoint accepted') or diag($out);
ok(-f $t->dir . '/spans.jsonl', 'and created');
is((stat $t->dir . '/spans.jsonl')[2] & 07777, 0600, 'mode 0600');

($rc, $out) = nginx_t('vaquero_endpoint file:%%TESTDIR%%/spans.jsonl; '
                      . 'vaquero_protocol otlp_json;');
is($rc, 0, 'file endpoint with OTLP JSON') or diag($out);

# Authorization is the collector's own when there is no vaquero_api_key
($rc, $out) = nginx_t('vaquero_export_header Authorization "Basic dTpw";');
is($rc, 0, 'export header Authorization without a key') or diag($out);
($rc, $out) = nginx_t('vaquero_protocol otlp; vaquero_project_id p; '
                      . 'vaquero_export_header X-Project-ID q;');
is($rc, 0, 'X-Project-ID is free with OTLP') or diag($out);

# bad values

my @bad = (
    [ 'vaquero maybe;', '', qr/invalid value "maybe" in "vaquero" directive/ ],
    [ '', 'vaquero on; vaquero off;', qr/"vaquero" directive is duplicate/ ],
    [ 'vaquero_endpoint ftp://x;', undef,
      qr/invalid URL "ftp:\/\/x" in "vaquero_endpoint" directive, it must start with "http:\/\/", "https:\/\/" or "file:\/"/ ],
    [ 'vaquero_endpoint http://;', undef,
      qr/invalid URL "http:\/\/" in "vaquero_endpoint" directive, it has no host/ ],
    [ 'vaquero_endpoint https:///base;', undef, qr/in "vaquero_endpoint" directive, it has no host/ ],
    [ 'vaquero_endpoint http//x;', undef, qr/in "vaquero_endpoint" directive, it must start with/ ],
    [ 'vaquero_endpoint http://h:0;', undef, qr/in "vaquero_endpoint" directive, it has an invalid port/ ],
    [ 'vaquero_endpoint http://h:99999;', undef, qr/it has an invalid port/ ],
    [ 'vaquero_endpoint http://user:pw@h;', undef, qr/it must not hold a user name or password/ ],
    [ 'vaquero_endpoint http://h/?a=1;', undef, qr/it must not have a query/ ],
    [ 'vaquero_endpoint file:relative.jsonl;', undef,
      qr/invalid URL "file:relative.jsonl" in "vaquero_endpoint" directive, the path after "file:" must be absolute/ ],
    [ 'vaquero_endpoint file:/nonexistent-vq-dir/spans.jsonl;', undef,
      qr/open\(\) "\/nonexistent-vq-dir\/spans.jsonl" failed \(2: No such file or directory\)/ ],
    [ 'vaquero_endpoint file:/dev/null;', undef,
      qr/the file endpoint "\/dev\/null" is not a regular file/ ],
    [ 'vaquero_endpoint file://host/x;', undef,
      qr/in "vaquero_endpoint" directive, a file endpoint has no host/ ],
    [ 'vaquero_endpoint http://ho^st/api;', undef,
      qr/invalid URL "http:\/\/ho\^st\/api" in "vaquero_endpoint" directive, libcurl refuses it/ ],
    [ 'vaquero_endpoint http://a; vaquero_endpoint http://b;', undef,
      qr/"vaquero_endpoint" directive is duplicate/ ],
    [ 'vaquero_protocol zipkin;', undef,
      qr/invalid value "zipkin" in "vaquero_protocol" directive, it must be "vaquero", "otlp" or "otlp_json"/ ],
    [ 'vaquero_protocol otlp; vaquero_protocol otlp_json;', undef,
      qr/"vaquero_protocol" directive is duplicate/ ],
    [ 'vaquero_endpoint file:%%TESTDIR%%/spans.jsonl; vaquero_protocol otlp;', undef,
      qr/"vaquero_protocol otlp" \(protobuf\) cannot be written to the file endpoint/ ],
    [ 'vaquero_resource_attribute "" x;', undef,
      qr/"vaquero_resource_attribute" directive has an empty key/ ],
    [ 'vaquero_resource_attribute k;', undef,
      qr/invalid number of arguments in "vaquero_resource_attribute"/ ],
    [ 'vaquero_resource_attribute a 1; vaquero_resource_attribute a 2;', undef,
      qr/duplicate key "a" in "vaquero_resource_attribute" directive/ ],
    [ 'vaquero_export_header "Bad Name" x;', undef,
      qr/invalid header name "Bad Name" in "vaquero_export_header" directive/ ],
    [ 'vaquero_export_header content-type text/plain;', undef,
      qr/"vaquero_export_header" directive cannot set "content-type", the exporter sets it/ ],
    [ 'vaquero_export_header X-A 1; vaquero_export_header x-a 2;', undef,
      qr/duplicate header "x-a" in "vaquero_export_header" directive/ ],
    [ 'vaquero_export_header Authorization "Basic x";' . "\n" . 'vaquero_api_key k;', undef,
      qr/"vaquero_export_header" directive cannot set "Authorization" with "vaquero_api_key", the exporter sets it/ ],
    [ 'vaquero_export_header X-Project-ID p; vaquero_project_id p;', undef,
      qr/cannot set "X-Project-ID" with "vaquero_project_id"/ ],
    [ join(' ', map { "vaquero_export_header X-H$_ v;" } 1 .. 33), undef,
      qr/too many "vaquero_export_header" directives, at most 32/ ],
    [ 'vaquero_gzip maybe;', undef, qr/invalid value "maybe" in "vaquero_gzip" directive/ ],
    [ 'vaquero_ssl_verify maybe;', undef, qr/invalid value "maybe" in "vaquero_ssl_verify" directive/ ],
    [ 'vaquero_ssl_certificate nonexistent.pem;', undef,
      qr/open\(\) "\S*\/nonexistent.pem" failed \(2: No such file or directory\)/ ],
    [ 'vaquero_ssl_trusted_certificate key.txt;', undef,
      qr/"vaquero_ssl_trusted_certificate": "\S*key.txt" holds no PEM data/ ],
    [ 'vaquero_ssl_certificate_key cert.pem;', undef,
      qr/"vaquero_ssl_certificate_key" is set without "vaquero_ssl_certificate"/ ],
    [ 'vaquero_ssl_certificate cert.pem; vaquero_ssl_certificate cert.pem;', undef,
      qr/"vaquero_ssl_certificate" directive is duplicate/ ],
    [ 'vaquero_api_key "";', undef, qr/"vaquero_api_key" directive must not be empty/ ],
    [ 'vaquero_api_key k; vaquero_api_key_file key.txt;', undef,
      qr/"vaquero_api_key_file" directive is duplicate, or conflicts/ ],
    [ 'vaquero_api_key_file nonexistent.txt;', undef,
      qr/open\(\) "\S*\/nonexistent.txt" failed \(2: No such file or directory\)/ ],
    [ 'vaquero_api_key_file empty.txt;', undef,
      qr/"vaquero_api_key_file": ".*empty.txt" holds no key/ ],
    [ 'vaquero_project_id "";', undef, qr/"vaquero_project_id" directive must not be empty/ ],
    [ 'vaquero_service_name "";', undef, qr/"vaquero_service_name" directive must not be empty/ ],
    [ 'vaquero_mode staging;', undef,
      qr/invalid value "staging" in "vaquero_mode" directive, it must be "production" or "development"/ ],
    [ 'vaquero_batch_size 0;', undef, qr/"vaquero_batch_size" directive must be between 1 and 10000/ ],
    [ 'vaquero_batch_size 10001;', undef, qr/"vaquero_batch_size" directive must be between 1 and 10000/ ],
    [ 'vaquero_batch_size many;', undef, qr/"vaquero_batch_size" directive invalid number/ ],
    [ 'vaquero_mode production; vaquero_mode development;', undef, qr/"vaquero_mode" directive is duplicate/ ],
    [ 'vaquero_flush_interval 0;', undef, qr/"vaquero_flush_interval" directive must be more than 0/ ],
    [ 'vaquero_flush_interval soon;', undef, qr/"vaquero_flush_interval" directive invalid value/ ],
    [ 'vaquero_export_timeout 0;', undef, qr/"vaquero_export_timeout" directive must be more than 0/ ],
    [ 'vaquero_shutdown_timeout x;', undef, qr/"vaquero_shutdown_timeout" directive invalid value/ ],
    [ 'vaquero_queue_size 1k;', undef, qr/"vaquero_queue_size" directive is too small, the least is 64k/ ],
    [ 'vaquero_queue_size 5000m;', undef, qr/"vaquero_queue_size" directive is too large/ ],
    [ 'vaquero_queue_size big;', undef, qr/"vaquero_queue_size" directive invalid value/ ],
    [ '', 'vaquero on; vaquero_agent_name "";', qr/"vaquero_agent_name" directive must not be empty/ ],
    [ '', 'vaquero on; vaquero_attribute "" x;', qr/"vaquero_attribute" directive has an empty key/ ],
    [ '', 'vaquero on; vaquero_attribute k;', qr/invalid number of arguments in "vaquero_attribute"/ ],
    [ '', 'vaquero on; ' . join(' ', map { "vaquero_attribute k$_ v;" } 1 .. 9),
      qr/too many "vaquero_attribute" directives, at most 8/ ],
    [ '', 'vaquero_endpoint http://x;', qr/"vaquero_endpoint" directive is not allowed here/ ],
    [ '', 'vaquero_trace_context maybe;', qr/invalid value "maybe" in "vaquero_trace_context" directive/ ],
    [ '', 'vaquero_upstream_spans yes;', qr/invalid value "yes" in "vaquero_upstream_spans" directive/ ],
    [ '', 'vaquero_sample_rate 1.5;', qr/invalid value "1.5" in "vaquero_sample_rate" directive, it must be between 0 and 1/ ],
    [ '', 'vaquero_sample_rate -0.1;', qr/invalid value "-0.1" in "vaquero_sample_rate" directive, it must be a number between 0 and 1/ ],
    [ '', 'vaquero_sample_rate 10%;', qr/invalid value "10%" in "vaquero_sample_rate" directive/ ],
    [ '', 'vaquero_sample_rate 0.5; vaquero_sample_rate 0.1;', qr/"vaquero_sample_rate" directive is duplicate/ ],
    [ '', 'vaquero_sample_slow 0;', qr/"vaquero_sample_slow" directive must be more than 0/ ],
    [ '', 'vaquero_sample_slow soon;', qr/"vaquero_sample_slow" directive invalid value/ ],
    [ '', 'vaquero_sample_parent maybe;', qr/invalid value "maybe" in "vaquero_sample_parent" directive/ ],
);

for my $case (@bad) {
    my ($http, $loc, $re) = @$case;
    ($rc, $out) = nginx_t($http, $loc);
    isnt($rc, 0, "rejected: $http " . ($loc // ''));
    like($out, qr/\[emerg\].*$re.* in \S+nginx\.conf:\d+/,
         'message names the directive, file and line');
}

# nginx checks variables after parsing, so its message has no line
($rc, $out) = nginx_t('', 'vaquero on; vaquero_span_name "$nonexistent_var";');
isnt($rc, 0, 'unknown variable in vaquero_span_name rejected');
like($out, qr/\[emerg\].*unknown "nonexistent_var" variable/, 'and named');

# the key file's first line, trimmed, is the key; the module loaded but
# switched on nowhere starts no thread and adds no zone

$t->start_collector;
$t->write_config(conf(<<'HTTP', 'vaquero on; return 204;'));
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_api_key_file key.txt;
    vaquero_flush_interval 50ms;
HTTP
$t->run(wait_ports => ['http']);
http_get($t->port('http'), '/');
my @spans = $t->wait_spans(1);
my @req = $t->collected;
is($req[0]{headers}{authorization}, 'Bearer file-key-789',
   'vaquero_api_key_file: first line, trimmed');
ok(!exists $req[0]{headers}{'x-project-id'}, 'no X-Project-ID when unset');
is($spans[0]{raw_data}{metadata}{project_id}, undef, 'project_id null');
is($spans[0]{raw_data}{metadata}{service_name}, 'nginx', 'default service');
is($spans[0]{name}, 'GET /', 'default span name');
is($spans[0]{environment}, 'production', 'default mode');
$t->stop;

$t->write_file('error.log', '');
$t->write_config(conf('', 'return 204;'));
$t->run(wait_ports => ['http']);
my @workers = $t->workers;
is($t->threads_of($workers[0]), 1, 'not switched on: no exporter thread');
$t->stop;
unlike($t->error_log, qr/exporter thread started/s, 'and none started');

done_testing();

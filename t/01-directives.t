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

# bad values

my @bad = (
    [ 'vaquero maybe;', '', qr/invalid value "maybe" in "vaquero" directive/ ],
    [ '', 'vaquero on; vaquero off;', qr/"vaquero" directive is duplicate/ ],
    [ 'vaquero_endpoint ftp://x;', undef,
      qr/invalid URL "ftp:\/\/x" in "vaquero_endpoint"/ ],
    [ 'vaquero_endpoint http://;', undef, qr/in "vaquero_endpoint"/ ],
    [ 'vaquero_endpoint file:/tmp/x;', undef,
      qr/"vaquero_endpoint": file endpoints are not supported yet/ ],
    [ 'vaquero_api_key "";', undef, qr/"vaquero_api_key" directive must not be empty/ ],
    [ 'vaquero_api_key k; vaquero_api_key_file key.txt;', undef,
      qr/"vaquero_api_key_file" directive is duplicate, or conflicts/ ],
    [ 'vaquero_api_key_file nonexistent.txt;', undef,
      qr/"vaquero_api_key_file": cannot open ".*nonexistent.txt"/ ],
    [ 'vaquero_api_key_file empty.txt;', undef,
      qr/"vaquero_api_key_file": ".*empty.txt" holds no key/ ],
    [ 'vaquero_project_id "";', undef, qr/"vaquero_project_id" directive must not be empty/ ],
    [ 'vaquero_service_name "";', undef, qr/"vaquero_service_name" directive must not be empty/ ],
    [ 'vaquero_mode staging;', undef, qr/invalid value "staging" in "vaquero_mode"/ ],
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

#!/usr/bin/perl

# Delivery as the protocol expects, against a collector that misbehaves
# on purpose: Retry-After honoured on 429 and 503 (seconds and HTTP-date),
# a 301 dropped and counted (never followed, never retried), an answer cut
# by a reset retried before its status came and not after, connections
# refused and then accepted again; and
# with Debian's default error_log level (error), the failures, the spans
# dropped (with their count) and what the exporter says while it stops at
# "nginx -s quit" are all in the log.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use VaqueroTest qw(http_get status_json);

my $t = VaqueroTest->new;

sub config {
    my (%o) = @_;
    return <<"CONF";
%%TEST_GLOBALS%%
error_log %%TESTDIR%%/error-default.log error;
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_batch_size 5;
    vaquero_flush_interval 50ms;
    vaquero_export_timeout 1s;
    vaquero_shutdown_timeout 500ms;
    vaquero_queue_size 64k;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;

        location / {
            return 200 "ok\\n";
        }

        location = /status {
            vaquero off;
            vaquero_status;
        }
    }
}
CONF
}

$t->start_collector;
$t->write_config(config())->run(wait_ports => ['http']);
my $port = $t->port('http');

# the collector's requests since clear_collected, once there are $n
sub requests {
    my ($n) = @_;
    return $t->wait_for(sub { $t->collected }, $n);
}

# --- Retry-After: 2 ------------------------------------------------------

$t->clear_collected;
$t->collector_mode('429 retry-after=2', '200');
http_get($port, '/ra/seconds');
my @r = requests(2);
is(scalar @r, 2, 'Retry-After (seconds): the batch, then its retry');
my $waited = $r[1]{time} - $r[0]{time};
ok($waited >= 1.9, sprintf('no retry before 1.9 s (%.3f s)', $waited));
ok($waited < 8, sprintf('and not much later (%.3f s)', $waited));
is($r[1]{body}, $r[0]{body}, 'the same batch');
is(scalar $t->server_spans, 1, 'delivered once');

# --- Retry-After: an HTTP-date 3 s after the answer's second ------------

$t->clear_collected;
$t->collector_mode('503 retry-after-date=3', '200');
http_get($port, '/ra/date');
@r = requests(2);
is(scalar @r, 2, 'Retry-After (HTTP-date): the batch, then its retry');
$waited = $r[1]{time} - $r[0]{time};
ok($waited >= 1.9, sprintf('no retry before the date (%.3f s)', $waited));
ok($waited < 9, sprintf('and not much later (%.3f s)', $waited));
is(scalar $t->server_spans, 1, 'delivered once');

my $s = status_json($port);
is($s->{export_retries}, 2, 'two retries counted');
is($s->{spans_dropped_export_failed}, 0, 'nothing dropped');

# --- 301: a configuration error, dropped and counted --------------------

$t->clear_collected;
$t->collector_mode('301', '200');
http_get($port, '/redirected');
my $until = time + 15;
$s = status_json($port) until $s->{spans_dropped_export_failed} >= 1 || time > $until;
is($s->{spans_dropped_export_failed}, 1, '301: the span dropped, counted');
is($s->{last_export_status}, 301, 'last export status 301');
is($s->{export_failures}, 3, 'an export failure more');
is($s->{export_retries}, 2, 'not retried');

http_get($port, '/after-redirect');
@r = requests(2);
is(scalar @r, 2, 'the next batch goes out');
is($r[0]{mode}, '301', 'the first got the 301');
like($r[0]{body}, qr{"url.path":"/redirected"}, 'with the dropped span');
unlike($r[1]{body}, qr{/redirected}, 'which is not sent again');
like($r[1]{body}, qr{/after-redirect}, 'the next span is');

# --- an answer cut by a reset before its status: retried ---------------

$t->clear_collected;
$t->collector_mode('reset-head', '200');
http_get($port, '/reset');
@r = requests(2);
is(scalar @r, 2, 'reset in the status line: sent again');
is($r[0]{mode}, 'reset-head', 'the first answer was cut');
is($r[1]{body}, $r[0]{body}, 'the same batch');
my @spans = $t->wait_for(sub { $t->server_spans }, 1);
is(scalar @spans, 1, 'delivered');
$s = status_json($port);
is($s->{export_retries}, 3, 'a retry more');

# --- cut after its status: the 200 stands, the batch is not sent again --

$t->clear_collected;
$t->collector_mode('reset', '200');
my $exported = $s->{spans_exported};
http_get($port, '/reset-body');
$until = time + 15;
$s = status_json($port) until $s->{spans_exported} > $exported || time > $until;
is($s->{spans_exported}, $exported + 1, 'reset after a 200: exported');
is($s->{export_retries}, 3, 'not retried');
http_get($port, '/after-reset');
@r = requests(2);
is(scalar @r, 2, 'the next batch goes out');
is($r[0]{mode}, 'reset', 'the first answer was cut');
like($r[0]{body}, qr{"url.path":"/reset-body"}, 'with the span');
unlike($r[1]{body}, qr{/reset-body}, 'which is not sent again');
like($r[1]{body}, qr{/after-reset}, 'the next span is');

# --- refused connections, a full queue, error-level log lines -----------

$t->stop_collector;                     # connections refused now
http_get($port, "/refused/$_") for 1 .. 3;

my $default = sub { $t->read_file('error-default.log') };
my @err = $t->wait_for(sub {
    $default->() =~ /^(.*\[error\].*vaquero: export to http:\/\/127\.0\.0\.1:\d+\/api\/v1\/traces\/batch failed: .*will retry.*)$/mg
}, 1);
ok(@err, 'connection refused: an [error] line with Debian\'s default level')
    or diag($default->());

# fill the 64k queue (about 60 spans) while nothing gets out
http_get($port, "/overflow/$_") for 1 .. 150;
$s = status_json($port);
ok($s->{spans_dropped_queue_full} > 50,
   "queue full: $s->{spans_dropped_queue_full} spans dropped");
like($default->(), qr/\[error\].*vaquero: the span queue is full, \d+ spans dropped since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/,
     'the drops at [error], with their count');

my @failures = $default->() =~ /vaquero: export to .* failed/g;
ok(@failures <= 3, scalar(@failures) . ' export failure lines: at most one per 10 s');

# --- the collector is back: what the queue held is delivered -------------

$t->clear_collected;
$t->collector_mode('200');
$t->start_collector;
# (the exporter may be in a backoff of up to 10 s)
sub settled {
    my $s = status_json($port);
    return $s->{queue_used} == 0
           && $s->{spans_recorded} == $s->{spans_exported}
                                      + $s->{spans_dropped_queue_full}
                                      + $s->{spans_dropped_export_failed};
}
$until = time + 25;
select undef, undef, undef, 0.05 until settled() || time > $until;
$s = status_json($port);
ok(settled(), 'the queue drained once the collector was back');
my @back = grep { $_->{attrs}{'url.path'} =~ m{^/(refused|overflow)/} }
           $t->server_spans;
is(scalar @back, 150 + 3 - $s->{spans_dropped_queue_full},
   'every span the queue held arrived');

# --- quit while the collector stalls --------------------------------------

$t->collector_mode('stall');
http_get($port, "/stalled/$_") for 1 .. 3;
$t->wait_for(sub { grep { $_->{mode} eq 'stall' } $t->collected }, 1);
my $dropped = status_json($port)->{spans_dropped_queue_full};
$t->stop;

my $log = $default->();
like($log, qr/\[error\].*vaquero: stopped with \d+ spans not sent to \S+ within vaquero_shutdown_timeout/,
     'what the exporter said while stopping is logged after it stopped');

my $counted = 0;
$counted += $_ for $log =~ /the span queue is full, (\d+) spans dropped/g;
is($counted, $dropped, "the drop lines add up to the drops counted ($dropped)");
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

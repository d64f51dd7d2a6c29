#!/usr/bin/perl

# vaquero_status: JSON by default, Prometheus text when asked, behind
# allow/deny, no secret in it; its numbers agree with what the collector
# received, and after an overflow and a refusing collector the counters
# balance exactly: recorded == exported + dropped.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use VaqueroTest qw(http http_get http_keepalive status_json);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 2;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_api_key secret-key-123;
    vaquero_flush_interval 50ms;
    vaquero_batch_size 20;
    vaquero_queue_size 64k;
    vaquero_export_timeout 1s;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;

        location / {
            return 200 "ok\n";
        }

        location /sampled-out {
            vaquero_sample_rate 0;
            return 200 "ok\n";
        }

        location = /status {
            vaquero off;
            vaquero_status;
        }

        location = /status-denied {
            vaquero off;
            vaquero_status;
            deny all;
        }
    }
}
CONF
$t->start_collector->run(wait_ports => ['http']);
my $port = $t->port('http');

sub prometheus {
    my (%h) = @_;
    my $r = http_get($port, $h{uri} // '/status?format=prometheus',
                     $h{accept} ? (Accept => $h{accept}) : ());
    my ($head, $body) = split /\r\n\r\n/, $r, 2;
    return ($head, $body);
}

# until the queue is empty and the exporters hold nothing: counters settle
sub settled {
    my $s;
    for (1 .. 300) {
        $s = status_json($port);
        my $dropped = $s->{spans_dropped_queue_full} + $s->{spans_dropped_too_large}
                      + $s->{spans_dropped_export_failed}
                      + $s->{spans_dropped_writer_lost};
        return $s if $s->{queue_used} == 0
                     && $s->{spans_recorded} == $s->{spans_exported} + $dropped;
        select undef, undef, undef, 0.05;
    }
    return $s;
}

my $s = status_json($port);
is($s->{spans_recorded}, 0, 'nothing recorded yet');
ok($s->{queue_capacity} > 1, "queue capacity $s->{queue_capacity}");
is_deeply([sort keys %$s],
          [sort qw(version spans_recorded spans_sampled_out spans_exported
                   spans_dropped_queue_full spans_dropped_too_large
                   spans_dropped_export_failed spans_dropped_writer_lost
                   export_requests export_failures export_retries
                   queue_used queue_capacity last_export_status)],
          'JSON: every counter and gauge of DESIGN 7');

like(http_get($port, '/status-denied'), qr/^HTTP\/1.1 403/,
     'deny all applies to the status page');
like(http($port, "POST /status HTTP/1.0\r\nContent-Length: 0\r\n\r\n"),
     qr/^HTTP\/1.1 405/, 'GET and HEAD only');

# --- traffic, all delivered ----------------------------------------------

http_keepalive($port, '/a', 30);
http_keepalive($port, '/sampled-out', 7);
my @spans = $t->wait_for(sub { $t->server_spans }, 30);
$s = settled();
is($s->{spans_recorded}, 30, 'recorded: 30');
is($s->{spans_exported}, scalar(@spans), 'exported: what the collector got');
is($s->{spans_sampled_out}, 7, 'sampled out: 7');
is($s->{last_export_status}, 200, 'last export status');
is($s->{export_requests}, scalar($t->collected), 'export requests: as received');

# --- overflow while the collector stalls, then refusals ------------------

$t->collector_mode('stall');
http_keepalive($port, '/b', 20);      # wait in the queue or in a stalled batch
my @w;
for (1 .. 2) {
    my $pid = fork() // die;
    if ($pid == 0) {
        eval { http_keepalive($port, '/overflow', 300) };
        POSIX::_exit(0);
    }
    push @w, $pid;
}
waitpid $_, 0 for @w;

$s = status_json($port);
ok($s->{spans_dropped_queue_full} > 0,
   "queue full: $s->{spans_dropped_queue_full} dropped");
ok($s->{queue_used} > 0, "queue holds $s->{queue_used}");

# the stalled exports time out (1s) and are retried against a collector
# that now refuses: those batches are dropped and counted
$t->collector_mode('400');
my $until = time + 20;
do { $s = status_json($port) } until $s->{spans_dropped_export_failed} > 0 || time > $until;
ok($s->{spans_dropped_export_failed} > 0,
   "collector answered 400: $s->{spans_dropped_export_failed} dropped");

$t->collector_mode('200');
$s = settled();
my $dropped = $s->{spans_dropped_queue_full} + $s->{spans_dropped_too_large}
              + $s->{spans_dropped_export_failed} + $s->{spans_dropped_writer_lost};
is($s->{spans_recorded}, 30 + 20 + 600, 'recorded: every traced request');
is($s->{spans_recorded}, $s->{spans_exported} + $dropped,
   "recorded == exported + dropped ($s->{spans_recorded} == "
   . "$s->{spans_exported} + $dropped)");
is($s->{spans_exported}, scalar($t->server_spans),
   'exported: exactly what the collector accepted');
ok($s->{export_failures} > 0, "export failures: $s->{export_failures}");
ok($s->{export_retries} > 0, "export retries: $s->{export_retries}");

# --- Prometheus ----------------------------------------------------------

my ($head, $body) = prometheus();
like($head, qr/Content-Type: text\/plain; version=0\.0\.4/i,
     'Prometheus text exposition');
like($body, qr/^# HELP vaquero_spans_recorded_total .+\n# TYPE vaquero_spans_recorded_total counter\nvaquero_spans_recorded_total $s->{spans_recorded}$/m,
     'counters end in _total, with HELP and TYPE');
like($body, qr/^# TYPE vaquero_queue_capacity gauge\nvaquero_queue_capacity $s->{queue_capacity}$/m,
     'gauges have no _total');
my %prom = $body =~ /^vaquero_(\w+) (\d+)$/mg;
is($prom{spans_exported_total}, $s->{spans_exported}, 'same numbers as JSON');
is($prom{spans_dropped_queue_full_total}, $s->{spans_dropped_queue_full},
   'drops too');
for my $line (split /\n/, $body) {
    next if $line =~ /^# (HELP|TYPE) vaquero_\w+ /;
    like($line, qr/^vaquero_\w+ \d+$/, "sample line: $line") or last;
}

($head, $body) = prometheus(uri => '/status', accept => 'text/plain;version=0.0.4;q=0.9,*/*;q=0.1');
like($head, qr/Content-Type: text\/plain/i, 'Accept: text/plain gets Prometheus');
($head, $body) = prometheus(uri => '/status', accept => 'application/json');
like($head, qr/Content-Type: application\/json/i, 'else JSON');

unlike(http_get($port, '/status') . join('', prometheus()), qr/secret-key-123/,
       'no secret in it');

$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

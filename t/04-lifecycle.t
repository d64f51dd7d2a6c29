#!/usr/bin/perl

# One exporter thread per worker, started and stopped cleanly across
# "nginx -s reload", "-s quit" and "-s stop": no thread left behind, no
# [alert], spans recorded before a reload sent after it, and a stalled
# collector cannot hold a stopping worker past vaquero_shutdown_timeout.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use VaqueroTest qw(http_keepalive);

my $t = VaqueroTest->new;

my $conf = <<'CONF';
%%TEST_GLOBALS%%
worker_processes 2;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_batch_size 10;
    vaquero_flush_interval 100ms;
    vaquero_export_timeout 30s;
    vaquero_shutdown_timeout 1s;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        vaquero_attribute generation GEN;
        location / {
            return 200 "ok\n";
        }
    }
}
CONF

(my $gen1 = $conf) =~ s/GEN/one/;
(my $gen2 = $conf) =~ s/GEN/two/;

$t->write_config($gen1)->start_collector->run(wait_ports => ['http']);
my $port = $t->port('http');

my @w = $t->wait_workers(2, 2);
is(scalar @w, 2, 'two workers');
is_deeply([map { $t->threads_of($_) } @w], [2, 2],
          'each worker: its main thread and one exporter thread');

http_keepalive($port, '/before', 50);

$t->write_config($gen2);
$t->reload;

my @w2 = $t->wait_workers(2, 2);
is(scalar @w2, 2, 'two new workers after reload');
ok(!grep({ kill 0, $_ } @w), 'old workers gone, with their threads');
is_deeply([map { $t->threads_of($_) } @w2], [2, 2],
          'new workers: one exporter thread each');

http_keepalive($port, '/after', 50);

my @spans = $t->wait_spans(100);
sleep 0.5;
@spans = $t->spans;
is(scalar @spans, 100, 'all spans from before and after the reload');
is(scalar(grep { $_->{tags}{generation} eq 'one' } @spans), 50,
   'old configuration for requests before the reload');
is(scalar(grep { $_->{tags}{generation} eq 'two' } @spans), 50,
   'new configuration after');

# the collector fails: spans wait in the shared queue, which a reload
# keeps, and arrive once it answers again

$t->collector_mode('503');
http_keepalive($port, '/during-outage', 30);
sleep 0.3;
$t->reload;
http_keepalive($port, '/after-outage-reload', 20);
sleep 0.3;
$t->collector_mode('200');

@spans = $t->wait_spans(150, 30);
sleep 0.5;
@spans = $t->spans;
is(scalar @spans, 150, 'spans held through an outage and a reload arrive');
is(scalar(grep { $_->{raw_data}{attributes}{'url.path'} eq '/during-outage' }
          @spans), 30, 'every one recorded during the outage');
my %ids = map { $_->{raw_data}{metadata}{span_id} => 1 } @spans;
is(scalar keys %ids, 150, 'none twice');
ok(grep({ $_->{mode} eq '503' } $t->collected), 'the collector did refuse');
like($t->error_log, qr/\[error\].*vaquero: export to \S+ failed with HTTP 503/,
     'the failure is in error.log');
is(join("\n", $t->alerts), '', 'no alerts through reloads');

# a stalled collector: quit returns within the shutdown timeout, not the
# 30 s export timeout

$t->collector_mode('stall');
http_keepalive($port, '/stalled', 20);
sleep 0.5;
my $start = time;
$t->stop('QUIT');
my $took = time - $start;
ok($took < 10, sprintf('quit with a stalled collector took %.1f s', $took));
is(join("\n", $t->alerts), '', 'no alerts on quit');

# and stop (TERM) the same way

$t->write_file('error.log', '');
$t->run(wait_ports => ['http']);
http_keepalive($port, '/stalled-again', 20);
sleep 0.5;
$start = time;
$t->stop('TERM');
$took = time - $start;
ok($took < 10, sprintf('stop with a stalled collector took %.1f s', $took));
is(join("\n", $t->alerts), '', 'no alerts on stop');

done_testing();

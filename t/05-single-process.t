#!/usr/bin/perl

# "master_process off": the single process runs the exporter thread too.
# A reload re-reads the configuration in that same process, without
# exit_process/init_process: the exporter must move to the new cycle (and
# off a zone that is about to be unmapped) and keep sending.
#
# nginx itself does not serve requests properly after a reload with
# "master_process off" (checked without this module: the answer is
# garbled), so spans recorded before the reload are what is checked after it.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(sleep);
use lib 't/lib';
use VaqueroTest qw(http_keepalive);

my $t = VaqueroTest->new;

my $conf = <<'CONF';
%%TEST_GLOBALS%%
master_process off;
daemon off;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_flush_interval 100ms;
    vaquero_queue_size QUEUE;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        location / {
            return 200 "ok\n";
        }
    }
}
CONF

# the old exporter drains for up to vaquero_shutdown_timeout, then the
# worker's timer starts the new one
sub threads_soon {
    my ($pid, $want) = @_;
    my $n;
    for (1 .. 100) {
        $n = $t->threads_of($pid);
        last if $n == $want;
        sleep 0.1;
    }
    return $n;
}

sub config {
    my ($queue) = @_;
    (my $c = $conf) =~ s/QUEUE/$queue/;
    return $c;
}

$t->write_config(config('1m'))->start_collector
  ->run(foreground => 1, wait_ports => ['http']);
my $port = $t->port('http');
my $pid = $t->master_pid;

is($t->threads_of($pid), 2, 'single process: main thread and exporter');

http_keepalive($port, '/first', 10);
is(scalar($t->wait_spans(10)), 10, 'spans exported');

# spans held while the collector fails, then a reload keeping the zone:
# the exporter of the new cycle sends them

$t->collector_mode('503');
http_keepalive($port, '/held', 10);
sleep 0.5;
$t->signal('HUP');
sleep 1.5;
$t->collector_mode('200');

my @spans = $t->wait_spans(20);
is(scalar @spans, 20, 'spans held across a reload are sent after it');
ok(kill(0, $pid), 'the process lives on');
is(threads_soon($pid, 2), 2, 'one exporter thread after the reload');
like($t->error_log, qr/exporter thread started.*exporter thread started/s,
     'a new exporter for the new cycle');

# a different queue size: a new zone, the old one unmapped

$t->write_config(config('2m'));
$t->signal('HUP');
sleep 1.5;
ok(kill(0, $pid), 'alive after a reload that replaces the zone');
is(threads_soon($pid, 2), 2, 'one exporter thread');

$t->stop('QUIT');
ok(!kill(0, $pid), 'quit');
is(join("\n", $t->alerts), '', 'no alerts');

# stop (TERM) too

$t->write_config(config('1m'));
$t->run(foreground => 1, wait_ports => ['http']);
$pid = $t->master_pid;
http_keepalive($port, '/again', 5);
$t->wait_spans(25);
$t->stop('TERM');
ok(!kill(0, $pid), 'stop');
is(scalar($t->spans), 25, 'everything sent');
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

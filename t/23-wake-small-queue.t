#!/usr/bin/perl

# The wakes that replace polling are counted over all workers, every
# batch or every half queue, whichever is smaller, and a full queue wakes
# an exporter too.  Here the queue (vaquero_queue_size 64k: about 59
# spans) is smaller than a batch (100), two workers share it, and the
# flush interval is a minute.  An exporter woken only when a worker had
# pushed a batch's worth would leave the queue full, refusing spans,
# most of the time (about 120 of these 400 were refused that way); woken
# every half queue, the exporters move the spans into their batches as
# they come, and send each batch when it is full.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use VaqueroTest qw(http_keepalive);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF')->start_collector->run(wait_ports => ['http']);
%%TEST_GLOBALS%%
worker_processes 2;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_api_key k;
    vaquero_queue_size 64k;
    vaquero_batch_size 100;
    vaquero_flush_interval 60s;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        location /traced {
            vaquero on;
            return 200 "ok\n";
        }
        location = /status {
            vaquero_status;
        }
    }
}
CONF

my $port = $t->port('http');
$t->wait_workers(2, 2);

my $st = VaqueroTest::status_json($port, '/status');
cmp_ok($st->{queue_capacity}, '<', 100, "the queue holds $st->{queue_capacity} spans, less than a batch");

# forty connections of ten requests, spread over the workers
my @status;
push @status, http_keepalive($port, "/traced?c=$_", 10) for 1 .. 40;
is(scalar(grep { $_ == 200 } @status), 400, '400 requests answered');

$st = VaqueroTest::status_json($port, '/status');
is($st->{spans_recorded}, 400, '400 spans recorded');
my $full = $st->{spans_dropped_queue_full};
cmp_ok($full, '<=', 40, "$full refused by the full queue");

# what two exporters cannot hold in their batches went out, in full ones
my @spans = $t->wait_spans(100, 20);
cmp_ok(scalar @spans, '>=', 100,
       scalar(@spans) . ' spans sent well within the interval');

$t->stop;
is(scalar $t->spans, 400 - $full, 'after stop, every span not refused arrived');

done_testing;

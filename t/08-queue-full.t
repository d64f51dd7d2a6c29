#!/usr/bin/perl

# A full queue refuses spans, and requests never wait for it: with the
# collector stalled and a 64k queue, every request is still answered, the
# error log says so once (not once per span), and what the queue held is
# delivered when the collector answers again.  Also: the development
# preset flushes a partial batch within 2 s.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use lib 't/lib';
use VaqueroTest qw(http_keepalive);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_queue_size 64k;
    vaquero_batch_size 10;
    vaquero_flush_interval 50ms;
    vaquero_export_timeout 60s;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        location / {
            return 200 "ok\n";
        }
    }
}
CONF
$t->start_collector->run(wait_ports => ['http']);
my $port = $t->port('http');

# the first batch stalls in flight; everything after it fills the queue
$t->collector_mode('stall');
http_keepalive($port, '/first', 10);
sleep 0.5;

my $start = time;
my @status = http_keepalive($port, '/flood', 500);
my $took = time - $start;
is(scalar(grep { $_ == 200 } @status), 500,
   sprintf('500 requests answered with the queue full (%.2f s)', $took));

my @full = $t->error_log =~ /\[error\].*vaquero: the span queue is full, \d+ spans dropped since/g;
is(scalar @full, 1, 'the error log says so once, not once per span');

# the stalled batch is abandoned at the export timeout only; restart the
# collector so that its connection is cut and the batch retried
$t->stop_collector;
$t->collector_mode('200');
$t->start_collector;

my @spans = $t->wait_spans(60, 30);
sleep 1;
@spans = $t->spans;
my $flood = grep { $_->{raw_data}{attributes}{'url.path'} eq '/flood' } @spans;
ok($flood > 0 && $flood < 500,
   "what the queue held arrived ($flood of 500 flood spans), the rest dropped");
is(scalar(grep { $_->{raw_data}{attributes}{'url.path'} eq '/first' } @spans),
   10, 'the batch in flight when the collector stalled was not lost');
$t->stop;

# development preset: batch 10, flush 2 s

$t->clear_collected;
$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_mode development;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        location / {
            return 200 "ok\n";
        }
    }
}
CONF
$t->run(wait_ports => ['http']);

http_keepalive($port, '/dev', 25);
@spans = $t->wait_spans(25, 10);
is(scalar @spans, 25, 'development mode: all spans, partial batch flushed');
my @sizes = map { scalar @{ $_->{json}{traces} } } grep { $_->{json} } $t->collected;
is(scalar(grep { $_ > 10 } @sizes), 0, 'batches of at most 10 (' . "@sizes" . ')');
is($spans[0]{environment}, 'development', 'environment');

$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

#!/usr/bin/perl

# The exporter threads sleep a whole flush interval when they have nothing
# to send, and the request path wakes one (of any worker) once per batch:
# full batches go out at once though the interval is a minute, a partial
# one when the interval ends (stop sends it here), and an idle worker's
# thread does not wake every few milliseconds.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use VaqueroTest qw(http_keepalive);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF')->start_collector->run(wait_ports => ['http']);
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_api_key k;
    vaquero_batch_size 10;
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
my ($worker) = $t->wait_workers(1, 2);
ok($worker, 'a worker with its exporter thread');

# two batches' worth: sent now, not in a minute
my @status = http_keepalive($port, '/traced?a', 20);
is(scalar(grep { $_ == 200 } @status), 20, '20 requests answered');
is(scalar $t->wait_spans(20, 20), 20, 'full batches are sent at once');

# idle, holding no batch: the exporter thread sleeps (it woke every 10 ms)
my ($tid) = grep { slurp("/proc/$worker/task/$_/comm") eq "vaquero-export\n" }
            map { m{/(\d+)$} } glob "/proc/$worker/task/*";
ok($tid, 'the exporter thread, named vaquero-export');
my $before = switches($worker, $tid);
select undef, undef, undef, 2;
my $after = switches($worker, $tid);
ok(defined $before && defined $after, 'its context switches read');
cmp_ok($after - $before, '<', 10,
       'the idle exporter thread woke ' . ($after - $before) . ' times in 2 s');

# one and a half: the full one goes, the half waits for the interval
@status = http_keepalive($port, '/traced?b', 15);
is(scalar $t->wait_spans(30, 20), 30, 'the next full batch is sent');
select undef, undef, undef, 0.5;
is(scalar $t->spans, 30, 'the partial batch waits');
is(VaqueroTest::status_json($port, '/status')->{spans_recorded}, 35,
   '35 spans recorded');

# stop sends the partial batch, which the interval has not ended
$t->stop;
is(scalar $t->spans, 35, 'the partial batch is sent at stop');

done_testing;

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return <$fh> // '';
}

sub switches {
    my ($pid, $tid) = @_;
    open my $fh, '<', "/proc/$pid/task/$tid/status" or return undef;
    local $/;
    my $s = <$fh>;
    return $s =~ /^voluntary_ctxt_switches:\s+(\d+)/m ? $1 : undef;
}

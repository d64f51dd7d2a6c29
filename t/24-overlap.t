#!/usr/bin/perl

# Two export requests in flight: when the exporter is behind (its queue
# holds more than a batch when it sends one), the next batch goes on a
# second connection before the answer to the first is read, so that a
# collector's answer time does not cap what a worker exports.  The
# collector answers the first of those requests only once another one
# came; every span is delivered once.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use VaqueroTest qw(http_get status_json);

my $t = VaqueroTest->new;

$t->start_collector;
$t->write_config(<<'CONF')->run(wait_ports => ['http']);
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_batch_size 10;
    vaquero_flush_interval 100ms;
    vaquero_export_timeout 30s;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;

        location / {
            return 200 "ok\n";
        }

        location = /status {
            vaquero off;
            vaquero_status;
        }
    }
}
CONF
my $port = $t->port('http');

# the status page once $cond holds of it (or after 15 s)
sub status_when {
    my ($cond) = @_;
    my $s;
    for (1 .. 1500) {
        $s = status_json($port);
        last if $cond->($s);
        select undef, undef, undef, 0.01;
    }
    return $s;
}

# the first request waits for the test; the next one for a third
$t->collector_mode('200 wait-go', '200 hold=3', '200');

http_get($port, '/first');
is(scalar $t->wait_for(sub { $t->collected }, 1), 1,
   'the first batch came, and waits for its answer');

# forty more spans queue up behind it
http_get($port, "/more/$_") for 1 .. 40;
my $s = status_when(sub { $_[0]{spans_recorded} >= 41 });
is($s->{spans_recorded}, 41, '41 spans recorded');
is($s->{spans_exported}, 0, 'none exported while the first waits');

$t->write_file('collector.go', '');

my @spans = $t->wait_for(sub { $t->server_spans }, 41);
is(scalar @spans, 41, 'every span delivered');
my %ids = map { $_->{span_id} => 1 } @spans;
is(scalar keys %ids, 41, 'each once');

my ($held) = split /\n/, $t->read_file('collector.held');
ok(defined $held && $held >= 3,
   'the second batch was answered after a third came: two in flight ('
   . ($held // 'none') . ' requests seen)');

$s = status_when(sub { $_[0]{spans_exported} >= 41 });
is($s->{spans_exported}, 41, 'all counted exported');
is($s->{export_failures}, 0, 'no export failed');
is(scalar $t->collected, $s->{export_requests},
   'each export request seen once');

$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

done_testing;

#!/usr/bin/perl

# 1,000 requests at 100% produce exactly 1,000 spans: none lost, none
# doubled, over two workers and kept-alive connections.

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
    vaquero_batch_size 100;
    vaquero_flush_interval 200ms;

    log_format ids "$uri $request_id";

    server {
        listen 127.0.0.1:%%PORT_http%%;
        access_log %%TESTDIR%%/ids.log ids;
        location /traced {
            vaquero on;
            return 200 "ok\n";
        }
        location /with-header {
            vaquero on;
            add_header X-Request-ID $request_id;
            return 200 "ok\n";
        }
        location /plain {
            return 200 "ok\n";
        }
    }
}
CONF

my $port = $t->port('http');
my @status;
push @status, http_keepalive($port, "/traced?c=$_", 100) for 1 .. 10;
http_keepalive($port, '/plain', 50);

is(scalar(grep { $_ == 200 } @status), 1000, '1000 requests answered');

my @headers = map { /X-Request-ID: (\w+)/ ? $1 : () }
              map { VaqueroTest::http_get($port, "/with-header?n=$_") } 1 .. 20;
is(scalar @headers, 20, 'X-Request-ID from nginx');

my @spans = $t->wait_spans(1020, 30);
sleep 1;    # anything extra would arrive now
@spans = $t->spans;

my @with_header = grep { $_->{raw_data}{attributes}{'url.path'} eq '/with-header' }
                  @spans;
@spans = grep { $_->{raw_data}{attributes}{'url.path'} eq '/traced' } @spans;

is(scalar @spans, 1000, 'exactly 1000 spans');
is_deeply([sort map { $_->{raw_data}{attributes}{request_id} } @with_header],
          [sort @headers], 'request_id is the $request_id nginx sent');

# and what the access log shows, whichever of the two evaluated it first
my %logged;
for (split /\n/, $t->read_file('ids.log')) {
    my ($uri, $id) = split / /;
    $logged{$id} = $uri;
}
is(scalar(grep { ($logged{ $_->{raw_data}{attributes}{request_id} } // '')
                 eq '/traced' } @spans), 1000,
   'request_id equals $request_id in the access log');
like($spans[0]{raw_data}{attributes}{request_id}, qr/^[0-9a-f]{32}$/,
     'request_id: 32 hex digits');

my (%span_ids, %request_ids, %trace_ids);
for (@spans) {
    $span_ids{ $_->{raw_data}{metadata}{span_id} }++;
    $request_ids{ $_->{raw_data}{attributes}{request_id} }++;
    $trace_ids{ $_->{trace_id} }++;
}
is(scalar keys %span_ids, 1000, 'span ids unique');
is(scalar keys %trace_ids, 1000, 'trace ids unique');
is(scalar keys %request_ids, 1000, 'one span per request id');
is(scalar(grep { $_->{raw_data}{attributes}{'url.path'} =~ /plain/ } $t->spans),
   0, 'nothing from the untraced location');
is(scalar(grep { $_->{raw_data}{attributes}{response_size_bytes} != 3 } @spans),
   0, 'response size right on kept-alive connections');

my @batches = grep { $_->{json} } $t->collected;
is(scalar(grep { @{ $_->{json}{traces} } > 100 } @batches), 0,
   'no batch over vaquero_batch_size');

$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

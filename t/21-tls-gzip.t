#!/usr/bin/perl

# TLS and gzip to the collector.  A real nginx terminates TLS in front of
# the test collector and requires a client certificate (ssl_verify_client
# on); certificates are made by the test with openssl.  Exports arrive
# whole with gzip, and with mTLS (the key readable by root only: the
# master reads it); without a client certificate, or with one from
# another CA, the front refuses them (400: dropped and counted); a server
# certificate the trusted CAs do not vouch for fails every export while
# vaquero_ssl_verify is on, and not when it is off.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use lib 't/lib';
use VaqueroTest qw(http_get status_json);

my $t = VaqueroTest->new;
$t->start_collector;
my $certs = $t->make_certs;
chmod 0600, "$certs/client-key.pem", "$certs/other-client-key.pem";

sub config {
    my ($endpoint, @extra) = @_;
    my $extra = join "\n    ", @extra;
    return <<"CONF";
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint $endpoint;
    vaquero_api_key tls-key-1;
    vaquero_batch_size 10;
    vaquero_flush_interval 50ms;
    vaquero_export_timeout 2s;
    $extra

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

my $port = $t->port('http');

sub wait_status {
    my ($cond) = @_;
    my $s;
    my $until = time + 20;
    while (1) {
        $s = status_json($port);
        last if $cond->($s) || time > $until;
        select undef, undef, undef, 0.05;
    }
    return $s;
}

sub traffic {
    my ($prefix, $n) = @_;
    http_get($port, "$prefix/$_") for 1 .. $n;
}

# --- gzip, plain HTTP ------------------------------------------------------

$t->write_config(config('%%COLLECTOR%%', 'vaquero_gzip on;'))
  ->run(wait_ports => ['http']);
traffic('/gzip', 10);
my @spans = $t->wait_for(sub { $t->server_spans }, 10);
is(scalar @spans, 10, 'gzip: all spans arrived');
my @req = $t->collected;
for my $r (@req) {
    is($r->{headers}{'content-encoding'}, 'gzip', 'Content-Encoding: gzip');
    ok($r->{gzip}, 'the body is gzip') or diag($r->{gzip_error});
    ok($r->{json}, 'and inflates to the batch JSON');
    ok($r->{length} < length($r->{body}) / 3,
       "compressed: $r->{length} bytes for " . length($r->{body}));
}
$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

# --- mTLS through the TLS front ----------------------------------------

$t->start_tls_front;
my $https = 'https://127.0.0.1:' . $t->port('tls');

$t->clear_collected;
$t->write_config(config($https,
    "vaquero_ssl_trusted_certificate $certs/ca.pem;",
    "vaquero_ssl_certificate $certs/client.pem;",
    "vaquero_ssl_certificate_key $certs/client-key.pem;",
    'vaquero_gzip on;'))->run(wait_ports => ['http']);
traffic('/mtls', 10);
@spans = $t->wait_for(sub { $t->server_spans }, 10);
is(scalar @spans, 10, 'mTLS: all spans arrived');
@req = $t->collected;
is($req[0]{headers}{'x-client-verify'}, 'SUCCESS', 'the front verified our certificate');
like($req[0]{headers}{'x-client-dn'}, qr/CN=vaquero-client/, 'ours');
ok($req[0]{gzip} && $req[0]{json}, 'gzip through TLS, whole');
is($req[0]{headers}{authorization}, 'Bearer tls-key-1', 'the key went along');
my $s = status_json($port);
is($s->{spans_exported}, 10, 'exported: 10');
is($s->{export_failures}, 0, 'no failures');
$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

# --- no client certificate: refused ----------------------------------------

$t->clear_collected;
$t->write_config(config($https,
    "vaquero_ssl_trusted_certificate $certs/ca.pem;"))
  ->run(wait_ports => ['http']);
traffic('/nocert', 3);
$s = wait_status(sub { $_[0]{spans_dropped_export_failed} >= 3 });
is($s->{spans_dropped_export_failed}, 3, 'no client certificate: dropped');
is($s->{last_export_status}, 400, 'the front answered 400');
is(scalar $t->collected, 0, 'nothing reached the collector');
$t->stop;

# --- a client certificate of another CA: refused -------------------------

$t->write_config(config($https,
    "vaquero_ssl_trusted_certificate $certs/ca.pem;",
    "vaquero_ssl_certificate $certs/other-client.pem;",
    "vaquero_ssl_certificate_key $certs/other-client-key.pem;"))
  ->run(wait_ports => ['http']);
traffic('/othercert', 3);
$s = wait_status(sub { $_[0]{spans_dropped_export_failed} >= 3 });
is($s->{spans_dropped_export_failed}, 3, 'a certificate of another CA: dropped');
is($s->{last_export_status}, 400, 'the front answered 400');
is(scalar $t->collected, 0, 'nothing reached the collector');
$t->stop;

# --- the wrong CA trusted, verify on: every export fails ---------------

$t->write_file('error.log', '');
$t->write_config(config($https,
    "vaquero_ssl_trusted_certificate $certs/other-ca.pem;",
    "vaquero_ssl_certificate $certs/client.pem;",
    "vaquero_ssl_certificate_key $certs/client-key.pem;"))
  ->run(wait_ports => ['http']);
traffic('/wrongca', 3);
$s = wait_status(sub { $_[0]{export_failures} >= 2 });
ok($s->{export_failures} >= 2, "wrong CA: exports fail ($s->{export_failures})");
is($s->{spans_exported}, 0, 'nothing exported');
is($s->{last_export_status}, 0, 'no answer');
is(scalar $t->collected, 0, 'nothing reached the collector');
my @lines = $t->wait_for(sub {
    grep { /\[error\].*vaquero: export to https:.* failed: .*certificate/i }
    split /\n/, $t->error_log
}, 1);
ok(@lines, 'the error log says why') or diag($t->error_log);
$t->stop;

# --- the same with vaquero_ssl_verify off: sent --------------------------

$t->clear_collected;
$t->write_config(config($https,
    "vaquero_ssl_trusted_certificate $certs/other-ca.pem;",
    "vaquero_ssl_certificate $certs/client.pem;",
    "vaquero_ssl_certificate_key $certs/client-key.pem;",
    'vaquero_ssl_verify off;'))
  ->run(wait_ports => ['http']);
traffic('/noverify', 3);
@spans = $t->wait_for(sub { $t->server_spans }, 3);
is(scalar @spans, 3, 'vaquero_ssl_verify off: sent anyway');
$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

#!/usr/bin/perl

# vaquero_protocol end to end: the same traffic exported as Vaquero
# batches, OTLP/HTTP protobuf (decoded with protoc's classes) and OTLP/HTTP
# JSON, each to its path with its content type, carrying the same ids as
# the requests saw ($vaquero_trace_id, $vaquero_span_id, the client's
# traceparent); resource attributes and extra export headers arrive.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use VaqueroTest qw(http_get);

my $t = VaqueroTest->new;
$t->start_collector;

sub config {
    my ($protocol) = @_;
    return <<"CONF";
%%TEST_GLOBALS%%
worker_processes 2;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%/base;
    vaquero_protocol $protocol;
    vaquero_api_key proto-key-1;
    vaquero_project_id proj-p;
    vaquero_service_name edge-proto;
    vaquero_resource_attribute service.version 1.2.3;
    vaquero_resource_attribute deployment.region eu-west;
    vaquero_export_header X-Scope-OrgID tenant-7;
    vaquero_batch_size 50;
    vaquero_flush_interval 100ms;

    upstream backend {
        server 127.0.0.1:%%PORT_backend%%;
    }

    server {
        listen 127.0.0.1:%%PORT_backend%%;
        location / { return 200 "backend\\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        add_header X-Trace-Id \$vaquero_trace_id always;
        add_header X-Span-Id \$vaquero_span_id always;

        location /r/ {
            return 200 "ok\\n";
        }

        location /fail/ {
            return 503;
        }

        location /up/ {
            proxy_pass http://backend;
        }
    }
}
CONF
}

# the requests: path, traceparent (or none)
my @requests = (
    [ '/r/1', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' ],
    [ '/r/2', undef ],
    [ '/fail/3', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' ],
    [ '/up/4', '00-11111111111111111111111111111111-2222222222222222-01' ],
    [ '/up/5', undef ],
);

# server spans of one run, normalised: { path => { trace_id, span_id,
# parent_id, name, status_code } }, and client spans by parent
sub normalise {
    my ($protocol) = @_;
    my (%server, %client);

    if ($protocol eq 'vaquero') {
        for my $s ($t->spans) {
            (my $tid = $s->{trace_id}) =~ s/-//g;
            my $n = { trace_id => $tid, span_id => $s->{span_id},
                      parent_id => $s->{parent_id},
                      name => $s->{kind} eq 'trace' ? $s->{name}
                                                    : $s->{raw_data}{span_name},
                      status_code => $s->{attrs}{status_code} };
            if ($s->{span_kind} eq 'server') {
                $server{ $s->{attrs}{'url.path'} } = $n;
            } else {
                $client{ $n->{parent_id} } = $n;
            }
        }
    } else {
        for my $s ($t->otlp_spans) {
            my $n = { trace_id => $s->{trace_id}, span_id => $s->{span_id},
                      parent_id => $s->{parent_id}, name => $s->{name},
                      status_code => $s->{attrs}{'http.response.status_code'},
                      resource => $s->{resource} };
            if ($s->{kind} == 2) {
                $server{ $s->{attrs}{'url.path'} } = $n;
            } else {
                $client{ $n->{parent_id} } = $n;
            }
        }
    }

    return (\%server, \%client);
}

my %runs;

for my $protocol (qw(vaquero otlp otlp_json)) {
    $t->clear_collected;
    $t->write_file('error.log', '');
    $t->write_config(config($protocol))->run(wait_ports => ['http']);
    my $port = $t->port('http');

    my %seen;
    for my $r (@requests) {
        my ($path, $tp) = @$r;
        my $reply = http_get($port, $path, $tp ? (traceparent => $tp) : ());
        my ($tid) = $reply =~ /^X-Trace-Id: (\w+)/mi;
        my ($sid) = $reply =~ /^X-Span-Id: (\w+)/mi;
        $seen{$path} = { trace_id => $tid, span_id => $sid,
                         parent_id => $tp ? (split /-/, $tp)[2] : undef };
    }

    # 5 server spans, and a client span for each of the 2 proxied requests
    my $want = 7;
    my $got = $t->wait_for(sub {
        my ($s, $c) = normalise($protocol);
        return (values %$s, values %$c);
    }, $want);
    $t->stop;

    my ($server, $client) = normalise($protocol);
    is(scalar keys %$server, 5, "$protocol: a server span per request");
    is(scalar keys %$client, 2, "$protocol: a client span per upstream attempt");

    for my $path (map { $_->[0] } @requests) {
        my $s = $server->{$path};
        is($s->{trace_id}, $seen{$path}{trace_id},
           "$protocol $path: trace id as \$vaquero_trace_id");
        is($s->{span_id}, $seen{$path}{span_id},
           "$protocol $path: span id as \$vaquero_span_id");
        is($s->{parent_id}, $seen{$path}{parent_id},
           "$protocol $path: parent as the client's traceparent");
    }

    for my $path ('/up/4', '/up/5') {
        my $c = $client->{ $server->{$path}{span_id} };
        ok($c, "$protocol $path: the client span's parent is the server span");
        is($c->{trace_id}, $server->{$path}{trace_id}, "$protocol: same trace");
        is($c->{status_code}, 200, "$protocol: upstream status");
    }

    is($server->{'/fail/3'}{status_code}, 503, "$protocol: status code");

    # the requests themselves
    my @req = grep { $_->{mode} =~ /^2/ } $t->collected;
    ok(@req >= 1, "$protocol: batches arrived");
    for my $r (@req) {
        my %want = (vaquero => ['/base/api/v1/traces/batch', 'application/json'],
                    otlp => ['/base/v1/traces', 'application/x-protobuf'],
                    otlp_json => ['/base/v1/traces', 'application/json']);
        is($r->{path}, $want{$protocol}[0], "$protocol: path");
        is($r->{headers}{'content-type'}, $want{$protocol}[1],
           "$protocol: content type");
        is($r->{headers}{authorization}, 'Bearer proto-key-1',
           "$protocol: Authorization: Bearer");
        is($r->{headers}{'x-scope-orgid'}, 'tenant-7',
           "$protocol: vaquero_export_header");
        is($r->{headers}{'x-project-id'},
           $protocol eq 'vaquero' ? 'proj-p' : undef,
           "$protocol: X-Project-ID in the Vaquero protocol only");
        like($r->{headers}{'user-agent'}, qr{^ngx_vaquero_module/},
             "$protocol: User-Agent");
    }

    if ($protocol ne 'vaquero') {
        my $res = $server->{'/r/1'}{resource};
        is($res->{'service.name'}, 'edge-proto', "$protocol: service.name");
        is($res->{'service.version'}, '1.2.3',
           "$protocol: vaquero_resource_attribute service.version");
        is($res->{'deployment.region'}, 'eu-west',
           "$protocol: vaquero_resource_attribute deployment.region");
        is($res->{'vaquero.project_id'}, 'proj-p', "$protocol: project id");
        my ($scope) = map { $_->{scope} } $t->otlp_spans;
        is($scope->{name}, 'ngx_vaquero_module', "$protocol: scope");
    }

    like($t->error_log, qr/exporter thread started, sending to "[^"]+" \($protocol\)/,
         "$protocol: the log says which protocol");
    is(join("\n", $t->alerts), '', "$protocol: no alerts");

    $runs{$protocol} = $server;
}

# the same traffic, the same story in every format
for my $path (map { $_->[0] } @requests) {
    for my $protocol (qw(otlp otlp_json)) {
        my ($a, $b) = ($runs{vaquero}{$path}, $runs{$protocol}{$path});
        is($b->{name}, $a->{name}, "$path: same span name in $protocol");
        is($b->{status_code}, $a->{status_code}, "$path: same status in $protocol");
        is($b->{parent_id}, $a->{parent_id}, "$path: same parent in $protocol");
        is($b->{trace_id}, $a->{trace_id}, "$path: same trace id in $protocol")
            if $a->{parent_id};
    }
}

done_testing();

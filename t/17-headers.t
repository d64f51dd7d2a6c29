#!/usr/bin/perl

# Header capture: request and response headers as span attributes, every
# value of a repeated header, credentials always redacted, and
# development mode's safe default set.

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use VaqueroTest qw(http);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_flush_interval 50ms;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;

        location /capture {
            vaquero_capture_request_header X-Tenant Accept Authorization
                                           Proxy-Authorization Cookie X-Api-Key;
            vaquero_capture_response_header Content-Type Set-Cookie;
            add_header Set-Cookie "session=s3cr3t; HttpOnly";
            return 200 "ok\n";
        }

        location /basic {
            vaquero_capture_request_header Authorization X-Missing;
            return 200 "ok\n";
        }

        location /none {
            return 200 "ok\n";
        }
    }
}
CONF
$t->start_collector->run(wait_ports => ['http']);
my $port = $t->port('http');

sub get {
    my ($uri, @h) = @_;
    return http($port, "GET $uri HTTP/1.0\r\nHost: localhost\r\n"
                       . join('', map { "$_->[0]: $_->[1]\r\n" } @h) . "\r\n");
}

like(get('/capture',
         ['X-Tenant', 'acme'], ['X-Tenant', 'globex'],
         ['Accept', 'application/json'],
         ['Authorization', 'Bearer eyJhbGciOiJIUzI1NiJ9.payload.signature'],
         ['Proxy-Authorization', 'Basic dXNlcjpwYXNz'],
         ['Cookie', 'session=abc123; theme=dark'],
         ['X-Api-Key', 'key-0123456789']),
     qr/^HTTP\/1.1 200/, 'request with credentials');
like(get('/basic', ['Authorization', 'Bearer short']), qr/200/,
     'a short bearer token');
like(get('/none', ['X-Tenant', 'acme']), qr/200/, 'nothing captured here');

my @s = $t->wait_for(sub { $t->server_spans }, 3);
my %by = map { $_->{attrs}{'url.path'} => $_ } @s;

my $tags = $by{'/capture'}{tags};
is($tags->{'http.request.header.x-tenant'}, 'acme, globex',
   'a repeated header: every value');
is($tags->{'http.request.header.accept'}, 'application/json', 'Accept');
is($tags->{'http.request.header.authorization'}, 'Bearer eyJhbGciOi...',
   'bearer token: at most its first 10 characters, then "..."');
is($tags->{'http.request.header.proxy-authorization'}, 'Basic [REDACTED]',
   'other credentials: the scheme only');
is($tags->{'http.request.header.cookie'}, '[REDACTED]', 'cookies: nothing');
is($tags->{'http.request.header.x-api-key'}, '[REDACTED]', 'API key: nothing');
is($tags->{'http.response.header.content-type'}, 'text/plain',
   'response Content-Type');
is($tags->{'http.response.header.set-cookie'}, '[REDACTED]',
   'Set-Cookie: nothing');

is($by{'/basic'}{tags}{'http.request.header.authorization'}, 'Bearer sh...',
   'a short token keeps at most half of itself');
ok(!exists $by{'/basic'}{tags}{'http.request.header.x-missing'},
   'a header not sent: no attribute');
is_deeply($by{'/none'}{tags}, {}, 'nothing captured without the directives');

my $all = join '', map { $_->{body} } $t->collected;
for my $secret (qw(payload.signature dXNlcjpwYXNz abc123 key-0123456789 s3cr3t)) {
    unlike($all, qr/\Q$secret\E/, "\"$secret\" never exported");
}

$t->stop;

# development mode: a safe default set, where nothing is configured

$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_mode development;
    vaquero_flush_interval 50ms;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        location /dev {
            return 200 "ok\n";
        }
    }
}
CONF
$t->clear_collected;
$t->run(wait_ports => ['http']);
like(get('/dev', ['Accept', 'text/html'], ['X-Request-ID', 'r-1'],
         ['Authorization', 'Bearer topsecret-token-value']), qr/200/,
     'development mode request');
my ($dev) = $t->wait_for(sub { $t->server_spans }, 1);
is($dev->{tags}{'http.request.header.accept'}, 'text/html',
   'development: Accept captured');
is($dev->{tags}{'http.request.header.x-request-id'}, 'r-1',
   'development: X-Request-ID captured');
is($dev->{tags}{'http.response.header.content-type'}, 'text/plain',
   'development: response Content-Type captured');
ok(!exists $dev->{tags}{'http.request.header.authorization'},
   'development: Authorization is not in the default set');
$t->stop;

# more attributes and captured headers than a record holds: nginx -t says so
$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        location / {
            vaquero_attribute a 1; vaquero_attribute b 2; vaquero_attribute c 3;
            vaquero_attribute d 4; vaquero_attribute e 5;
            vaquero_capture_request_header h1 h2 h3 h4;
        }
    }
}
CONF
my ($rc, $out) = $t->test_config;
isnt($rc, 0, 'nine attributes and headers: refused');
like($out, qr/too many "vaquero_attribute" and captured headers in a location: 9, at most 8/,
     'with a message that says why');

$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        location / { vaquero_capture_request_header "X Bad"; }
    }
}
CONF
($rc, $out) = $t->test_config;
like($out, qr/invalid header name "X Bad" in "vaquero_capture_request_header" directive in \S+:\d+/,
     'an invalid header name: refused, file and line');

is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

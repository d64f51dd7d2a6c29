#!/usr/bin/perl

# The cache manager and cache loader run init_process but never
# exit_process: they must start no exporter thread (only workers do), and
# quit must not hang on them.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(sleep time);
use lib 't/lib';
use VaqueroTest qw(http_get);

my $t = VaqueroTest->new;

$t->write_config(<<'CONF');
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_flush_interval 100ms;
    proxy_cache_path %%TESTDIR%%/cache keys_zone=c:1m;

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

my %role;
for (1 .. 100) {
    %role = map { $t->role($_) => $_ } $t->children;
    last if $role{'cache manager'};
    sleep 0.05;
}
($role{worker}) = $t->wait_workers(1, 2);

ok($role{'cache manager'}, 'a cache manager runs');
is($t->threads_of($role{'cache manager'}), 1, 'the cache manager has no exporter thread');
is($t->threads_of($role{'cache loader'}), 1, 'nor the cache loader')
    if $role{'cache loader'};
is($t->threads_of($role{worker}), 2, 'the worker has one');

http_get($t->port('http'), '/x');
is(scalar($t->wait_spans(1)), 1, 'and traces');

my $start = time;
$t->stop('QUIT');
ok(time - $start < 10, 'quit does not hang');
is(join("\n", $t->alerts), '', 'no alerts');

done_testing();

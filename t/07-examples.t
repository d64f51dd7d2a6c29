#!/usr/bin/perl

# The example configs under conf/ pass "nginx -t" as shipped (with the
# module path, key file and run-time paths pointed into a test directory).

use strict;
use warnings;

use Test::More;
use lib 't/lib';
use VaqueroTest;

my $t = VaqueroTest->new;
my $d = $t->dir;

$t->write_file('vaquero.key', "example-key\n");

for my $file (glob($t->root . '/conf/*.conf')) {
    open my $fh, '<', $file or die;
    my $conf = do { local $/; <$fh> };

    $conf =~ s#^load_module \S+;#%%TEST_GLOBALS%%#m;
    $conf =~ s#/etc/nginx/vaquero.key#$d/vaquero.key#g;
    $conf =~ s#^http [{]#http {\n    %%TEST_GLOBALS_HTTP%%#m;
    $conf =~ s#listen (\d+);#listen 127.0.0.1:%%PORT_http%%;#g;

    $t->write_config($conf);
    my ($rc, $out) = $t->test_config;
    is($rc, 0, "$file passes nginx -t") or diag($out);
}

done_testing();

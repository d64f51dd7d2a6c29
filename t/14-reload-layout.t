#!/usr/bin/perl

# The zone says what layout it has (a version, and the sizes of what it
# holds), and a zone of another layout is never used blindly: a reload
# that would reuse it is refused with a message saying what to do (the
# running workers, which know its layout, go on), and one that changes the
# queue size does not keep it.
#
# nginx hands a zone over only to the module that declared it (same name,
# size and tag), so no other build of this module can come by one; this
# test makes such a zone by writing another layout number into the header
# of the running one, through /proc/PID/mem, as another build would have.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(sleep time);
use lib 't/lib';
use VaqueroTest qw(http_get);

my $t = VaqueroTest->new;

# nginx stopped whatever happens, before the test directory (and
# nginx.pid in it) is removed
END { $t->stop('TERM') if $t && $t->master_pid; }

my $conf = <<'CONF';
%%TEST_GLOBALS%%
worker_processes 2;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_batch_size 10;
    vaquero_flush_interval 100ms;
    vaquero_shutdown_timeout 1s;
    vaquero_queue_size QUEUE;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        location / {
            return 200 "ok\n";
        }
    }
}
CONF

sub config {
    my ($queue) = @_;
    (my $c = $conf) =~ s/QUEUE/$queue/;
    return $c;
}

sub paths {
    return map { $_->{attrs}{'url.path'} } $t->server_spans;
}

sub get_all {
    my ($prefix, $n) = @_;
    my $ok = grep { http_get($t->port('http'), "$prefix/$_") =~ m{^HTTP/1.1 200} }
             1 .. $n;
    is($ok, $n, "$n requests to $prefix/");
    my @want = map { "$prefix/$_" } 1 .. $n;
    my %want = map { $_ => 1 } @want;
    ok($t->wait_for(sub { grep { $want{$_} } paths() }, $n),
       "their spans arrive");
}

# The zone's header in the master's memory: the address of its layout
# number, just after the magic "VQZONE\0\0".
sub find_layout {
    no warnings 'portable';
    my $pid = $t->master_pid;
    open my $maps, '<', "/proc/$pid/maps" or return;
    open my $mem, '<:raw', "/proc/$pid/mem" or return;
    for (<$maps>) {
        my ($from, $to, $perm, $name) = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)/
            or next;
        next unless $perm =~ /^rw.s/ && $name =~ m{^/dev/zero};
        my $len = hex($to) - hex($from);
        $len = 65536 if $len > 65536;
        sysseek($mem, hex($from), 0) or next;
        sysread($mem, my $buf, $len) or next;
        my $at = index($buf, "VQZONE\0\0");
        return hex($from) + $at + 8 if $at >= 0;
    }
    return;
}

sub poke_u32 {
    my ($addr, $value) = @_;
    open my $mem, '+<:raw', "/proc/" . $t->master_pid . "/mem" or die "mem: $!";
    sysseek($mem, $addr, 0) or die "seek: $!";
    sysread($mem, my $old, 4) == 4 or die "read: $!";
    sysseek($mem, $addr, 0) or die "seek: $!";
    syswrite($mem, pack('V', $value)) == 4 or die "write: $!";
    return unpack('V', $old);
}

$t->write_config(config('256k'))->start_collector->run(wait_ports => ['http']);
my @w = $t->wait_workers(2, 2);

get_all('/a', 10);

my $addr = find_layout();
ok($addr, 'the zone starts with its magic and layout');

unless ($addr) {
    done_testing();
    exit;
}

my $layout = poke_u32($addr, 0xbad);
ok($layout > 0, "layout $layout, now claimed to be another");

# the same queue size: nginx would hand this very zone over

$t->signal('HUP');
my $refused = qr/\[emerg\].*\Qvaquero: shared memory zone "vaquero:262144" holds a span queue of another layout\E.*\Qnot reused: restart nginx, or change vaquero_queue_size\E/;
ok($t->wait_for(sub { $t->error_log =~ $refused ? 1 : () }, 1),
   'a reload that would reuse it is refused, saying why and what to do');
is_deeply([$t->wait_workers(2, 2)], [@w], 'the running workers go on');

get_all('/b', 10);

# another queue size: a new zone, and the old one is not kept

$t->write_config(config('512k'));
$t->reload;
my @w2 = $t->wait_workers(2, 2);
ok(!grep({ my $p = $_; grep { $_ == $p } @w } @w2), 'new workers');
like($t->error_log,
     qr/\[warn\].*\Qvaquero: shared memory zone "vaquero:262144" holds a span queue of another layout\E.*\Qnot kept\E/,
     'a reload changing the size does not keep it');
unlike($t->error_log, qr/keeping the span queue/, 'not kept');

get_all('/c', 10);

my %n;
$n{$_}++ for paths();
is(scalar(keys %n), 30, 'every span');
ok(!grep({ $_ > 1 } values %n), 'once');

# the new zone has the layout of this build
$addr = find_layout();
ok($addr, 'the new zone has a header');
{
    open my $mem, '<:raw', "/proc/" . $t->master_pid . "/mem" or die;
    no warnings 'portable';
    sysseek($mem, $addr, 0);
    sysread($mem, my $v, 4);
    is(unpack('V', $v), $layout, 'with this build\'s layout');
}

$t->stop('QUIT');
is(scalar(grep { !/vaquero: shared memory zone/ } $t->alerts), 0,
   'no other alerts');

done_testing();

#!/usr/bin/perl

# "nginx -s reload" keeps its promise (issue 8):
#
# 1. With an unchanged zone, every span is exported once, with the
#    resource (service name, project id, environment) of the configuration
#    that recorded it, and old workers never send a span of the new ones
#    (so never with the old API key), while they stay alive serving a
#    request and while the collector fails across the reload.
# 2. A reload that changes vaquero_queue_size loses nothing the old queue
#    held while the collector was down (master process, and single process).
# 3. Twenty reloads under steady traffic, some changing the queue size,
#    some with the collector failing: one span per request, exactly.

use strict;
use warnings;

use File::Path qw(remove_tree);
use POSIX qw(setsid);
use Test::More;
use Time::HiRes qw(sleep time);
use lib 't/lib';
use VaqueroTest qw(http_get);

my $t = VaqueroTest->new;
my $dir = $t->dir;

# helper processes and nginx, ended whatever happens (before the test
# directory, and nginx.pid in it, is removed)
my (@children, @groups);
END {
    kill 'TERM', @children if @children;
    kill 'TERM', map { -$_ } @groups if @groups;
    $t->stop('TERM') if $t && $t->master_pid;
}

my $conf = <<'CONF';
%%TEST_GLOBALS%%
worker_processes 2;
MASTER
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint %%COLLECTOR%%;
    vaquero_service_name svc-GEN;
    vaquero_project_id proj-GEN;
    vaquero_api_key key-GEN;
    vaquero_mode MODE;
    vaquero_batch_size 10;
    vaquero_flush_interval 100ms;
    vaquero_export_timeout 2s;
    vaquero_shutdown_timeout 1s;
    vaquero_queue_size QUEUE;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        vaquero_attribute generation GEN;
        location / {
            return 200 "ok\n";
        }
        location /hold/ {
            vaquero_upstream_spans off;
            proxy_pass http://127.0.0.1:%%PORT_hold%%;
            proxy_read_timeout 60s;
        }
    }
}
CONF

# A configuration: its generation's name says its service name, project
# id and API key, and (odd or even) its mode, i.e. its environment.
my %mode_of;

sub config {
    my (%o) = @_;
    (my $c = $conf) =~ s/GEN/$o{gen}/g;
    my $mode = $o{mode} // 'production';
    $mode_of{$o{gen}} = $mode;
    $c =~ s/MODE/$mode/;
    $c =~ s/QUEUE/$o{queue} \/\/ '1m'/e;
    $c =~ s/MASTER/$o{single} ? "master_process off;\ndaemon off;" : ''/e;
    return $c;
}

###########################################################################
# helpers

# The server spans the collector accepted (2xx), each with the request
# that carried it: { span, path, generation, head (the request headers) }.
sub delivered {
    my @d;
    for my $r ($t->collected) {
        next unless $r->{mode} =~ /^2/ && $r->{json};
        next unless ($r->{headers}{'user-agent'} // '') =~ /^ngx_vaquero_module/;
        for my $s (@{ $r->{json}{traces} // [] }) {
            push @d, { span => $s, head => $r->{headers},
                       path => $s->{raw_data}{attributes}{'url.path'},
                       generation => $s->{tags}{generation} };
        }
    }
    return @d;
}

sub paths_delivered {
    my ($prefix) = @_;
    return grep { index($_->{path} // '', $prefix) == 0 } delivered();
}

# Waits until every one of these paths has arrived (or $timeout).
sub wait_paths {
    my ($want, $timeout) = @_;
    my $until = time + ($timeout // 30);
    my %got;
    while (time < $until) {
        %got = map { $_->{path} => 1 } delivered();
        return 1 unless grep { !$got{$_} } @$want;
        sleep 0.1;
    }
    diag('missing: ' . join(' ', grep { !$got{$_} } @$want));
    return 0;
}

# Each wanted path exactly once, and nothing else.
sub check_once {
    my ($want, $what) = @_;
    my %n;
    $n{ $_->{path} // '' }++ for delivered();
    my @missing = grep { !$n{$_} } @$want;
    my %w = map { $_ => 1 } @$want;
    my @twice = grep { $n{$_} > 1 } sort keys %n;
    my @extra = grep { !$w{$_} } sort keys %n;
    ok(!@missing && !@twice && !@extra,
       "$what: each of " . @$want . " spans exactly once")
        or diag("missing @missing[0 .. ($#missing < 9 ? $#missing : 9)]; "
                . "twice @twice; unexpected @extra");
}

# Every span with its own configuration's resource, every request with
# the X-Project-ID of its spans; returns the deliveries.
sub check_resources {
    my ($what) = @_;
    my @bad;
    for my $d (delivered()) {
        my $g = $d->{generation} // '?';
        my $s = $d->{span};
        my $m = $s->{raw_data}{metadata};
        push @bad, "$d->{path} ($g): $m->{service_name}/$m->{project_id}/"
                   . "$s->{environment}, X-Project-ID "
                   . ($d->{head}{'x-project-id'} // '-')
            unless $m->{service_name} eq "svc-$g"
                   && ($m->{project_id} // '') eq "proj-$g"
                   && $s->{environment} eq ($mode_of{$g} // '?')
                   && ($d->{head}{'x-project-id'} // '') eq "proj-$g";
    }
    ok(!@bad, "$what: every span with the resource of the configuration "
              . "that recorded it")
        or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}

sub get_all {
    my ($prefix, $n) = @_;
    my @ok;
    for my $i (1 .. $n) {
        my $r = http_get($t->port('http'), "$prefix/$i");
        push @ok, "$prefix/$i" if $r =~ m{^HTTP/1.1 200};
    }
    is(scalar @ok, $n, "$n requests to $prefix/ answered");
    return @ok;
}

sub wait_file {
    my ($name, $timeout) = @_;
    my $until = time + ($timeout // 15);
    while (time < $until) {
        return 1 if -e "$dir/$name";
        sleep 0.02;
    }
    return 0;
}

sub lines {
    my ($name) = @_;
    return grep { length } split /\n/, $t->read_file($name);
}

# Steady traffic: GET $prefix/N, N = 1, 2, ..., about 100 a second, until
# told to stop; the paths answered 200 go to $prefix.ok, others to .fail.
sub start_client {
    my ($prefix) = @_;
    (my $name = $prefix) =~ s{/}{}g;
    my $port = $t->port('http');
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        for (my $i = 1; !-e "$dir/$name.stop"; $i++) {
            my $r = eval { http_get($port, "$prefix/$i") } // '';
            my $file = $r =~ m{^HTTP/1.1 200} ? "$name.ok" : "$name.fail";
            open my $fh, '>>', "$dir/$file" or POSIX::_exit(1);
            print $fh "$prefix/$i\n";
            close $fh;
            sleep 0.01;
        }
        POSIX::_exit(0);
    }
    push @children, $pid;
    return { pid => $pid, name => $name };
}

sub stop_client {
    my ($c) = @_;
    $t->write_file("$c->{name}.stop", '');
    waitpid $c->{pid}, 0;
    my @fail = lines("$c->{name}.fail");
    is(scalar @fail, 0, "no request of the steady traffic failed")
        or diag("@fail[0 .. ($#fail < 9 ? $#fail : 9)]");
    return lines("$c->{name}.ok");
}

# An upstream that holds each request until the file "release" exists:
# a request to it keeps its worker alive through a reload.
sub start_hold {
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1:'
                                                    . $t->port('hold'),
                                       Listen => 16, ReuseAddr => 1)
        or die "hold: $!";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        setsid();
        while (my $c = $listen->accept) {
            my $head = '';
            while ($head !~ /\r\n\r\n/) {
                sysread($c, my $ch, 1) or last;
                $head .= $ch;
            }
            open my $fh, '>', "$dir/held";
            close $fh;
            sleep 0.02 until -e "$dir/release";
            syswrite $c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                         . "Connection: close\r\n\r\nheld\n";
            close $c;
        }
        POSIX::_exit(0);
    }
    close $listen;
    push @groups, $pid;
    return $pid;
}

sub new_workers {
    my ($old) = @_;
    my %old = map { $_ => 1 } @$old;
    return grep { !$old{$_} } $t->workers;
}

# After a HUP: until the new workers run (with their exporter threads)
# and $left of the old processes are still there.
sub wait_reloaded {
    my ($old, $n, $left) = @_;
    my $until = time + 20;
    while (time < $until) {
        my @new = new_workers($old);
        my @alive = grep { kill 0, $_ } @$old;
        return 1 if @new == $n && @alive == $left
                    && !grep { $t->threads_of($_) != 2 } @new;
        sleep 0.05;
    }
    return 0;
}

sub restart {
    my (%o) = @_;
    $t->stop('QUIT') if $t->master_pid;
    unlink map { "$dir/$_" } qw(held release);
    $t->clear_collected;
    $t->write_file('error.log', '');
    $t->collector_mode('200');
    $t->write_config(config(%o))
      ->run($o{single} ? (foreground => 1) : (), wait_ports => ['http']);
    $t->wait_workers(2, 2) unless $o{single};
}

$t->start_collector;
my $hold = start_hold();

###########################################################################
# 1. The same zone across a reload: old workers alive (one of them held
# by a request), spans of the old configuration still queued (the
# collector fails) when the new workers start, traffic before, during and
# after the reload.

restart(gen => 'one', mode => 'production');

my @want = get_all('/a', 20);
ok(wait_paths(\@want), 'spans before the reload arrive');

# a request that keeps an old worker alive past the reload
my $holder = fork() // die;
push @children, $holder;
if ($holder == 0) {
    http_get($t->port('http'), '/hold/1');
    POSIX::_exit(0);
}
ok(wait_file('held'), 'a request holds a worker');

$t->collector_mode('503');
push @want, get_all('/b', 30);
$t->wait_for(sub { grep { $_->{mode} eq '503' } $t->collected }, 2);

my $client = start_client('/d');
$t->wait_for(sub { lines('d.ok') }, 10);

my @old = $t->workers;
is(scalar @old, 2, 'two old workers');

$t->write_config(config(gen => 'two', mode => 'development'));
$t->signal('HUP');
ok(wait_reloaded(\@old, 2, 1),
   'new workers run; the old one that serves a request lives on');

push @want, get_all('/e', 30);

# the collector is back while the old worker still runs: its exporter
# sends what it held, and nothing of the new configuration
$t->collector_mode('200');
ok(wait_paths([grep { m{^/[abe]/} } @want]), 'spans of before, during and '
   . 'after the reload arrive, an old worker still running');

$t->write_file('release', '');
waitpid $holder, 0;
ok(wait_reloaded(\@old, 2, 0), 'the old worker is gone');

push @want, stop_client($client), '/hold/1';
ok(wait_paths(\@want), 'every span arrives');
sleep 0.5;   # and no more: anything twice would be here by now

check_once(\@want, 'reload, same zone');
check_resources('reload, same zone');

my @by_old_key = grep { ($_->{head}{authorization} // '') eq 'Bearer key-one' }
                 delivered();
my @by_new_key = grep { ($_->{head}{authorization} // '') eq 'Bearer key-two' }
                 delivered();
is(scalar(grep { $_->{generation} ne 'one' } @by_old_key), 0,
   'the old workers sent no span of the new configuration');
ok(grep({ $_->{generation} eq 'one' } @by_new_key),
   'spans of the old configuration queued when the new workers started '
   . 'were sent by them, with their own resource');
ok(grep({ $_->{generation} eq 'one' && $_->{path} =~ m{^/b/} } @by_old_key),
   'the old worker still running sent the batch it held');
is(join("\n", $t->alerts), '', 'no alerts');

###########################################################################
# 2. A reload that changes vaquero_queue_size, the collector down: the
# old zone is kept until it is drained, nothing it held is lost.

restart(gen => 'three', queue => '256k');

$t->collector_mode('503');
@want = get_all('/s', 40);
$t->wait_for(sub { grep { $_->{mode} eq '503' } $t->collected }, 2);

@old = $t->workers;
$t->write_config(config(gen => 'four', queue => '512k', mode => 'development'));
$t->reload;
ok(!grep({ kill 0, $_ } @old), 'old workers gone, the collector still down');
like($t->error_log,
     qr/\[notice\].*vaquero: keeping the span queue of vaquero_queue_size 262144/,
     'the old queue is kept');

push @want, get_all('/t', 20);
$t->collector_mode('200');
ok(wait_paths(\@want), 'what the old queue held arrives');

# drained, it goes at the next reload: the master unmaps it
sub old_zone_mapped {
    no warnings 'portable';
    open my $fh, '<', "/proc/" . $t->master_pid . "/maps" or return -1;
    my $size = ((262144 + 2048 + 65536 + 4095) >> 12) << 12;
    return scalar grep {
        /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s+\/dev\/zero/
            && hex($2) - hex($1) == $size
    } <$fh>;
}
{
    no warnings 'portable';
    is(old_zone_mapped(), 1, 'the old zone is there while kept');
    $t->reload;
    is(old_zone_mapped(), 0, 'and gone after the next reload, once drained');
}
is(scalar(() = $t->error_log =~ /keeping the span queue/g), 1,
   'kept once');

push @want, get_all('/u', 10);
ok(wait_paths(\@want), 'spans after that arrive');
sleep 0.5;
check_once(\@want, 'reload changing the queue size');
check_resources('reload changing the queue size');
is(join("\n", $t->alerts), '', 'no alerts');

# the same with "master_process off": the process keeps the old zone and
# its new exporter drains it (nginx itself serves no request properly
# after such a reload: see t/05-single-process.t)

restart(gen => 'five', queue => '256k', single => 1);

$t->collector_mode('503');
@want = get_all('/v', 15);
$t->wait_for(sub { grep { $_->{mode} eq '503' } $t->collected }, 2);
$t->write_config(config(gen => 'six', queue => '512k', single => 1));
$t->signal('HUP');
ok($t->wait_for(sub { $t->error_log =~ /keeping the span queue/ ? 1 : () },
                1), 'single process: the old queue is kept');
$t->collector_mode('200');
ok(wait_paths(\@want), 'single process: what the old queue held arrives');
sleep 0.5;
check_once(\@want, 'single process, reload changing the queue size');
check_resources('single process, reload changing the queue size');
$t->stop('QUIT');
is(join("\n", $t->alerts), '', 'no alerts');

###########################################################################
# 3. Twenty reloads under steady traffic: configurations in turn change
# the resource, or the queue size, or both; the collector fails during
# some of them.

restart(gen => 'g0', queue => '1m');
$client = start_client('/r');
$t->wait_for(sub { lines('r.ok') }, 10);

for my $i (1 .. 20) {
    $t->collector_mode($i >= 8 && $i <= 11 ? '503' : '200');
    $t->write_config(config(gen => "g$i", queue => ($i % 4 < 2 ? '2m' : '1m'),
                            mode => ($i % 2 ? 'development' : 'production')));
    my @w = $t->workers;
    $t->reload;
    my $n = () = lines('r.ok');
    ok(!grep({ kill 0, $_ } @w) && $t->workers == 2,
       "reload $i: new workers, old ones gone ($n requests so far)");
}

$t->collector_mode('200');
@want = stop_client($client);
ok(@want > 200, scalar(@want) . ' requests through 20 reloads');
ok(wait_paths(\@want, 60), 'all their spans arrive');
sleep 0.5;
check_once(\@want, '20 reloads');
check_resources('20 reloads');
is(join("\n", $t->alerts), '', 'no alerts');

$t->stop('QUIT');

done_testing();

#!/usr/bin/perl

# vaquero_endpoint file:/path: one JSON document (the protocol's body) per
# line, appended with one write() per batch, so that 4 workers under load
# never interleave their lines and every span is there exactly once; the
# file is created 0600; after it is moved, "nginx -s reopen" (USR1) makes
# the workers write to a new file at the path, 0600 and owned by the
# workers' user, and nothing more goes to the moved one.  OTLP JSON too.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use POSIX ();
use lib 't/lib';
use VaqueroTest qw(http_get http_keepalive status_json);

my $t = VaqueroTest->new;
my $file = $t->dir . '/spans.jsonl';

$t->write_config(<<'CONF')->run(wait_ports => ['http']);
%%TEST_GLOBALS%%
worker_processes 4;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint file:%%TESTDIR%%/spans.jsonl;
    vaquero_batch_size 20;
    vaquero_flush_interval 100ms;
    vaquero_queue_size 16m;

    server {
        listen 127.0.0.1:%%PORT_http%% reuseport;
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

# every line of a file: (lines, span ids, bad lines)
sub read_lines {
    my ($path) = @_;
    my (@ids, $lines, $bad);
    $lines = $bad = 0;
    open my $fh, '<', $path or return (0, [], 0);
    local $/ = "\n";
    while (my $line = <$fh>) {
        $lines++;
        unless ($line =~ /\n\z/) { $bad++; last }     # a line being written
        my $doc = eval { JSON::PP->new->utf8->decode($line) };
        unless ($doc && ref $doc->{traces} eq 'ARRAY') {
            $bad++;
            diag("bad line $lines: " . substr($line, 0, 200));
            next;
        }
        push @ids, map { $_->{raw_data}{metadata}{span_id} } @{ $doc->{traces} };
    }
    return ($lines, \@ids, $bad);
}

sub load {
    my ($path_prefix, $clients, $each) = @_;
    my @pids;
    for my $c (1 .. $clients) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            my @s = eval { http_keepalive($port, "$path_prefix/$c", $each) };
            POSIX::_exit((grep { $_ == 200 } @s) == $each ? 0 : 1);
        }
        push @pids, $pid;
    }
    my $ok = 0;
    for (@pids) {
        waitpid $_, 0;
        $ok++ if $? == 0;
    }
    is($ok, $clients, "$clients clients sent $each requests each");
}

# until the file holds $n spans (and the queue is empty)
sub wait_file {
    my ($path, $n) = @_;
    my ($lines, $ids, $bad);
    my $until = time + 30;
    while (time < $until) {
        ($lines, $ids, $bad) = read_lines($path);
        last if @$ids >= $n && status_json($port)->{queue_used} == 0;
        select undef, undef, undef, 0.05;
    }
    return read_lines($path);
}

is((stat $file)[2] & 07777, 0600, 'the master created the file 0600');

# --- 4 workers under load ------------------------------------------------

my @workers = $t->workers;
is(scalar @workers, 4, 'four workers');

load('/a', 8, 250);
my ($lines, $ids, $bad) = wait_file($file, 2000);

is($bad, 0, 'every line is a whole JSON document');
is(scalar @$ids, 2000, '2000 spans in the file');
my %uniq = map { $_ => 1 } @$ids;
is(scalar keys %uniq, 2000, 'each exactly once');

my $s = status_json($port);
is($s->{spans_exported}, 2000, 'exported: 2000');
is($s->{export_requests}, $lines, "a line per export: $lines lines");
is($s->{last_export_status}, 200, 'a written line counts as 200');
is((stat $file)[2] & 07777, 0600, 'still 0600');

# --- moved away, then nginx -s reopen ------------------------------------

my $moved = "$file.1";
rename $file, $moved or die "rename: $!";
ok(!-e $file, 'moved away');

my $before = () = $t->error_log =~ /vaquero: the exporter reopens/g;
$t->signal('USR1');

my @notes = $t->wait_for(sub {
    my @n = $t->error_log =~ /vaquero: the exporter reopens "\Q$file\E"/g;
    return @n[$before .. $#n];
}, 4);
is(scalar @notes, 4, 'each of the 4 exporters was asked to reopen');

ok(-f $file, 'the master created the file again');
my @st = stat $file;
is($st[2] & 07777, 0600, 'mode 0600');
is($st[4], (stat "/proc/$workers[0]")[4], "owned by the workers' user");

load('/b', 4, 250);
my ($lines2, $ids2, $bad2) = wait_file($file, 1000);
is($bad2, 0, 'new file: every line whole');
is(scalar @$ids2, 1000, 'new file: the 1000 spans sent after the reopen');

($lines, $ids, $bad) = read_lines($moved);
is(scalar @$ids, 2000, 'the moved file got nothing more');

$s = status_json($port);
is($s->{spans_exported}, 3000, 'exported: 3000');
is($s->{spans_recorded}, 3000, 'recorded: 3000');

$t->stop;
is(join("\n", $t->alerts), '', 'no alerts');
unlike($t->error_log, qr/\[error\].*vaquero/, 'no vaquero errors');

# --- OTLP JSON to a file, one worker -------------------------------------

my $otlp = $t->dir . '/otlp.jsonl';
$t->write_config(<<'CONF')->run(wait_ports => ['http']);
%%TEST_GLOBALS%%
worker_processes 1;
events { }
http {
    %%TEST_GLOBALS_HTTP%%
    vaquero_endpoint file:%%TESTDIR%%/otlp.jsonl;
    vaquero_protocol otlp_json;
    vaquero_resource_attribute service.version 9.9;
    vaquero_batch_size 4;
    vaquero_flush_interval 50ms;

    server {
        listen 127.0.0.1:%%PORT_http%%;
        vaquero on;
        location / { return 204; }
    }
}
CONF

http_get($port, "/o/$_") for 1 .. 10;
my @docs = $t->wait_for(sub {
    open my $fh, '<', $otlp or return ();
    my @d = map { JSON::PP->new->utf8->decode($_) } <$fh>;
    return map { @{ $_->{resourceSpans}[0]{scopeSpans}[0]{spans} } } @d;
}, 10);
is(scalar @docs, 10, 'OTLP JSON lines: 10 spans');
open my $fh, '<', $otlp or die;
my @raw = <$fh>;
close $fh;
is(scalar @raw, 3, 'three lines for batches of 4');
like($raw[0], qr/"service\.version","value":\{"stringValue":"9\.9"\}/,
     'with the resource attribute');
is((stat $otlp)[2] & 07777, 0600, 'mode 0600');
$t->stop;

done_testing();

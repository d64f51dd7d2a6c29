package VaqueroTest;

# Integration test harness, in the spirit of nginx's Test::Nginx: each test
# writes an nginx config into a temporary prefix, starts the packaged nginx
# with the module built from this tree, talks to it over loopback, and reads
# what a loopback collector (a forked Perl HTTP server it controls) received.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Temp qw(tempdir);
use Fcntl qw(:flock SEEK_SET O_RDWR O_CREAT);
use IO::Socket::INET;
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use JSON::PP;
use POSIX qw(WNOHANG setsid strftime);
use Socket qw(SOL_SOCKET SO_REUSEADDR SO_LINGER);
use Test::More;
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(http http_get http_post http_keepalive status_json);

use File::Basename qw(dirname);
use Scalar::Util qw(weaken);
my $ROOT = abs_path(dirname(__FILE__) . '/../..');

# Every instance, so that what a test started is stopped even when the
# test dies: File::Temp's own END removes nginx.pid before DESTROY runs.
my @instances;

our $NGINX = $ENV{TEST_NGINX_BINARY} // '/usr/sbin/nginx';
our $MODULE = $ENV{VAQUERO_MODULE} // "$ROOT/build/ngx_http_vaquero_module.so";
our $PYTHON = '/usr/bin/python3';

# A sanitizer build of the module loads into the packaged nginx with the
# ASan runtime preloaded into nginx (only): make test-sanitize sets these.
our $PRELOAD = $ENV{TEST_NGINX_PRELOAD};

sub nginx_env {
    return () unless $PRELOAD;
    return (LD_PRELOAD => $PRELOAD,
            ASAN_OPTIONS => 'detect_leaks=0:abort_on_error=0',
            UBSAN_OPTIONS => 'print_stacktrace=1');
}

sub new {
    my ($class) = @_;

    plan(skip_all => "no module at $MODULE: run make") unless -f $MODULE;

    my $dir = tempdir('vaquero-t-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{TEST_KEEP});
    chmod 0755, $dir;     # workers run as nobody

    my $self = bless { dir => $dir, ports => {}, owner => $$ }, $class;
    diag("test directory $dir") if $ENV{TEST_KEEP};
    push @instances, $self;
    weaken($instances[-1]);
    return $self;
}

sub dir { $_[0]{dir} }
sub root { $ROOT }

# Every port given out in this process, by any instance: a port found free
# is closed again before nginx binds it, so the kernel may offer it twice.
my %given;

# A free loopback port, the same one for the same name, never one given
# out before.
sub port {
    my ($self, $name) = @_;
    return $self->{ports}{$name} //= do {
        my $p;
        for (1 .. 100) {
            my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                          LocalPort => 0, Listen => 1,
                                          ReuseAddr => 1)
                or die "no free port: $!";
            $p = $s->sockport;
            close $s;
            last unless $given{$p}++;
        }
        $p;
    };
}

# A loopback port that refuses connections for as long as this object
# lives: bound and never listening, so no other socket can take it.
sub closed_port {
    my ($self, $name) = @_;
    return $self->{ports}{$name} //= do {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => 0, Proto => 'tcp')
            or die "no free port: $!";
        $self->{held}{$name} = $s;
        $given{$s->sockport} = 1;
        $s->sockport;
    };
}

sub write_file {
    my ($self, $name, $content) = @_;
    open my $fh, '>', "$self->{dir}/$name" or die "$name: $!";
    print $fh $content;
    close $fh;
}

sub read_file {
    my ($self, $name) = @_;
    open my $fh, '<', "$self->{dir}/$name" or return '';
    local $/;
    return scalar <$fh>;
}

# Config with %%MODULE%%, %%TESTDIR%%, %%PORT_name%%, %%COLLECTOR%% (the
# collector's URL), %%TEST_GLOBALS%% and %%TEST_GLOBALS_HTTP%% replaced.
# what every http{} of a test nginx in directory $d sets: nothing under
# the packaged defaults (/var/lib/nginx, /var/log/nginx)
sub _globals_http {
    my ($d) = @_;
    return <<"END";
client_body_temp_path $d/client_body_temp;
proxy_temp_path $d/proxy_temp;
fastcgi_temp_path $d/fastcgi_temp;
uwsgi_temp_path $d/uwsgi_temp;
scgi_temp_path $d/scgi_temp;
access_log $d/access.log;
END
}

sub write_config {
    my ($self, $conf) = @_;
    my $d = $self->{dir};

    my $globals = <<"END";
load_module $MODULE;
pid $d/nginx.pid;
error_log $d/error.log info;
END
    my $globals_http = _globals_http($d);

    $conf =~ s/%%TEST_GLOBALS%%/$globals/g;
    $conf =~ s/%%TEST_GLOBALS_HTTP%%/$globals_http/g;
    $conf =~ s/%%MODULE%%/$MODULE/g;
    $conf =~ s/%%TESTDIR%%/$d/g;
    $conf =~ s/%%COLLECTOR%%/'http:\/\/127.0.0.1:' . $self->port('collector')/ge;
    $conf =~ s/%%PORT_(\w+)%%/$self->port($1)/ge;

    $self->write_file('nginx.conf', $conf);
    return $self;
}

# nginx -t: (exit status, output)
sub test_config {
    my ($self) = @_;
    local %ENV = (%ENV, nginx_env());
    my $out = `$NGINX -p $self->{dir}/ -c $self->{dir}/nginx.conf -t 2>&1`;
    my $rc = $? >> 8;
    fail("sanitizer report from nginx -t:\n$out")
        if $PRELOAD && $out =~ /AddressSanitizer|runtime error:/;
    return ($rc, $out);
}

sub master_pid {
    my ($self) = @_;
    my $pid = $self->read_file('nginx.pid');
    chomp $pid;
    return $pid || undef;
}

sub run {
    my ($self, %opts) = @_;
    my $d = $self->{dir};

    unlink "$d/nginx.pid";
    local %ENV = (%ENV, nginx_env());

    if ($opts{foreground}) {
        # master_process off/daemon off: nginx stays our child
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            open STDOUT, '>>', "$d/stderr.log";
            open STDERR, '>>', "$d/stderr.log";
            { exec $NGINX, '-p', "$d/", '-c', "$d/nginx.conf" };
            POSIX::_exit(127);
        }
        $self->{foreground} = $pid;

    } else {
        system("$NGINX -p $d/ -c $d/nginx.conf >>$d/stderr.log 2>&1") == 0
            or die "nginx failed to start:\n" . $self->read_file('stderr.log')
                   . $self->read_file('error.log');
    }

    for (1 .. 100) {
        last if $self->master_pid && kill(0, $self->master_pid);
        sleep 0.05;
    }

    die "nginx did not start:\n" . $self->read_file('error.log')
        unless $self->master_pid;

    $self->{master} = $self->master_pid;

    # the master listens before it has forked its workers: wait for them
    unless ($opts{foreground}) {
        my ($n) = $self->read_file('nginx.conf') =~ /^\s*worker_processes\s+(\d+)/m;
        $self->wait_workers($n // 1);
    }

    # until every listen port answers
    for my $name (@{ $opts{wait_ports} // [] }) {
        $self->wait_port($self->port($name));
    }

    return $self;
}

sub wait_port {
    my ($self, $port, $timeout) = @_;
    my $until = time + ($timeout // 10);
    while (time < $until) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
        return 1 if $s;
        sleep 0.05;
    }
    die "nothing listens on $port";
}

sub signal {
    my ($self, $sig) = @_;
    kill $sig, $self->master_pid;
}

# Pids of the master's children (workers, cache manager, loader), from /proc.
sub children {
    my ($self) = @_;
    my $master = $self->master_pid or return ();
    my @w;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        my ($pid, $comm, $ppid) = $line =~ /^(\d+) \((.*)\) \S+ (\d+)/ or next;
        push @w, $pid if $ppid == $master;
    }
    return sort { $a <=> $b } @w;
}

# The role of an nginx process ("worker", "cache manager", ...), from its title.
sub role {
    my ($self, $pid) = @_;
    open my $fh, '<', "/proc/$pid/cmdline" or return '';
    my $cmd = <$fh> // '';
    $cmd =~ s/\0.*//s;
    return $cmd =~ /^nginx: (worker|cache manager|cache loader)/ ? $1 : '';
}

# Pids of the master's worker processes.
sub workers {
    my ($self) = @_;
    return grep { $self->role($_) eq 'worker' } $self->children;
}

# Waits until the master runs $n workers and, with $threads, until each
# has that many threads (its exporter started); returns their pids.
sub wait_workers {
    my ($self, $n, $threads) = @_;
    my $until = time + 15;
    my @w;
    while (time < $until) {
        @w = $self->workers;
        return @w if @w == $n
                     && (!$threads || !grep { $self->threads_of($_) != $threads } @w);
        sleep 0.05;
    }
    return @w;
}

sub threads_of {
    my ($self, $pid) = @_;
    my @t = glob "/proc/$pid/task/*";
    return scalar @t;
}

sub reload {
    my ($self) = @_;
    my @old = $self->children;
    my $n = () = $self->workers;
    $self->signal('HUP');
    # until the old processes are gone and as many new workers run
    my $until = time + 15;
    while (time < $until) {
        my %now = map { $_ => 1 } $self->children;
        my @new = $self->workers;
        last if !grep({ $now{$_} } @old) && @new == $n;
        sleep 0.05;
    }
    return $self;
}

# Stops nginx (QUIT by default) and waits until the master has exited.
sub stop {
    my ($self, $sig) = @_;
    my $pid = $self->master_pid or return;
    kill($sig // 'QUIT', $pid);

    my $until = time + 20;
    while (time < $until) {
        if ($self->{foreground}) {
            last if waitpid($self->{foreground}, WNOHANG) == $self->{foreground};
        } else {
            last unless kill 0, $pid;
        }
        sleep 0.05;
    }

    if (kill 0, $pid) {
        diag("nginx $pid did not stop, killing it");
        kill 'KILL', $pid;
    }
    delete $self->{foreground};
    delete $self->{master};
    unlink "$self->{dir}/nginx.pid";

    if ($PRELOAD) {
        my @reports = grep { /AddressSanitizer|runtime error:/ }
                      split /\n/, $self->error_log . $self->read_file('stderr.log');
        ok(!@reports, 'no sanitizer reports') or diag(join "\n", @reports);
    }
}

sub error_log { $_[0]->read_file('error.log') }

# Lines of error.log at alert level or worse.
sub alerts {
    my ($self) = @_;
    return grep { /\[(alert|emerg|crit)\]/ } split /\n/, $self->error_log;
}

###########################################################################
# The collector: records every request it receives as a JSON line in
# collector.log (with the time it came, and its body gunzipped when it
# came with Content-Encoding: gzip); answers as collector.mode says, read
# for every request:
#
#   "200", "503", "429", "400", ...   that status
#   "429 retry-after=2"              with "Retry-After: 2"
#   "503 retry-after-date=3"         with Retry-After: an HTTP-date 3 s on
#   "301"                            a redirect (with a Location)
#   "stall"                          never answers
#   "close"                          closes the connection without a word
#   "reset"                          a 200's head and half its body, then
#                                    a TCP reset
#   "reset-head"                     half a status line, then a TCP reset
#   "200 wait-go"                    that status once the file collector.go
#                                    is there (30 s at most)
#   "200 hold=N"                     that status once N requests came (5 s
#                                    at most); how many had come then goes
#                                    into collector.held, a line each
#
# A mode of several lines is a script: each request takes the first line
# while more than one is left, then the last one holds.  A collector that
# refuses connections is one that is stopped (stop_collector).

sub collector_mode {
    my ($self, @modes) = @_;
    $self->write_file('collector.mode.tmp', join("\n", @modes) . "\n");
    rename "$self->{dir}/collector.mode.tmp", "$self->{dir}/collector.mode";
}

# the mode for this request: the script's first line, taken under a lock
sub _next_mode {
    my ($dir) = @_;
    sysopen my $fh, "$dir/collector.mode.lock", O_RDWR | O_CREAT or return '200';
    flock $fh, LOCK_EX;
    my $mode = '200';
    if (open my $mfh, '<', "$dir/collector.mode") {
        my @lines = grep { length } map { s/\s+$//r } <$mfh>;
        close $mfh;
        $mode = $lines[0] // '200';
        if (@lines > 1) {
            shift @lines;
            open my $w, '>', "$dir/collector.mode.tmp" or die;
            print $w join("\n", @lines), "\n";
            close $w;
            rename "$dir/collector.mode.tmp", "$dir/collector.mode";
        }
    }
    close $fh;
    return $mode;
}

sub start_collector {
    my ($self) = @_;
    my $port = $self->port('collector');
    my $dir = $self->{dir};

    $self->collector_mode('200') unless -f "$dir/collector.mode";

    my $listen = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
                                       Listen => 128, ReuseAddr => 1)
        or die "collector cannot listen on $port: $!";

    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        setsid();
        $SIG{CHLD} = 'IGNORE';
        while (my $c = $listen->accept) {
            my $child = fork();
            if (defined $child && $child == 0) {
                close $listen;
                _serve_connection($c, $dir);
                POSIX::_exit(0);
            }
            close $c;
        }
        POSIX::_exit(0);
    }

    close $listen;
    $self->{collector} = $pid;
    return $self;
}

sub _serve_connection {
    my ($c, $dir) = @_;
    binmode $c;
    my $json = JSON::PP->new->canonical;

    while (1) {
        my $head = '';
        while ($head !~ /\r\n\r\n/) {
            my $n = sysread($c, my $chunk, 1);
            return unless $n;
            $head .= $chunk;
        }

        my ($request_line, @lines) = split /\r\n/, $head;
        my ($method, $path) = split / /, $request_line;
        my %h;
        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
            $h{lc $k} = $v;
        }

        my $body = '';
        if (my $len = $h{'content-length'}) {
            while (length($body) < $len) {
                my $n = sysread($c, $body, $len - length($body), length($body));
                return unless $n;
            }
        } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
            while (1) {
                my $line = '';
                while ($line !~ /\r\n$/) {
                    sysread($c, my $ch, 1) or return;
                    $line .= $ch;
                }
                my $size = hex $line;
                my $data = '';
                while (length($data) < $size + 2) {
                    sysread($c, $data, $size + 2 - length($data), length($data))
                        or return;
                }
                last if $size == 0;
                $body .= substr($data, 0, $size);
            }
        }

        my $mode = _next_mode($dir);
        my $received = time;

        my %rec = (method => $method, path => $path, headers => \%h,
                   mode => $mode, time => $received,
                   length => length $body);

        if (($h{'content-encoding'} // '') =~ /^gzip$/i) {
            my $plain;
            if (gunzip(\$body => \$plain)) {
                $body = $plain;
                $rec{gzip} = 1;
            } else {
                $rec{gzip_error} = "$GunzipError";
            }
        }

        $rec{body} = $body;

        open my $log, '>>', "$dir/collector.log" or die;
        flock $log, LOCK_EX;
        print $log $json->encode(\%rec), "\n";
        close $log;

        return if $mode eq 'close';

        if ($mode eq 'stall') {
            sleep 3600;
            return;
        }

        if ($mode =~ / wait-go$/) {
            for (1 .. 3000) {
                last if -e "$dir/collector.go";
                select undef, undef, undef, 0.01;
            }
        }

        if ($mode =~ / hold=(\d+)$/) {
            my ($want, $seen) = ($1, 0);
            for (1 .. 500) {
                $seen = _count_lines("$dir/collector.log");
                last if $seen >= $want;
                select undef, undef, undef, 0.01;
            }
            open my $held, '>>', "$dir/collector.held" or die;
            print $held "$seen\n";
            close $held;
        }

        if ($mode eq 'reset' || $mode eq 'reset-head') {
            syswrite $c, $mode eq 'reset'
                ? "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"par"
                : "HTTP/1.1 20";
            setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            close $c;
            return;
        }

        my ($status) = $mode =~ /^(\d+)/;
        $status //= 200;
        my $extra = '';
        if ($mode =~ /retry-after=(\S+)/) {
            $extra .= "Retry-After: $1\r\n";
        }
        if ($mode =~ /retry-after-date=(\d+)/) {
            $extra .= 'Retry-After: '
                      . strftime('%a, %d %b %Y %H:%M:%S GMT',
                                 gmtime(int($received) + $1)) . "\r\n";
        }
        if ($status =~ /^3/) {
            $extra .= "Location: http://127.0.0.1:1/moved$path\r\n";
        }

        my $reply = '{}';
        syswrite $c, "HTTP/1.1 $status X\r\nContent-Type: application/json\r\n"
                   . $extra
                   . "Content-Length: " . length($reply) . "\r\n\r\n$reply";
    }
}

sub _count_lines {
    my ($path) = @_;
    open my $fh, '<', $path or return 0;
    my $n = 0;
    $n++ while <$fh>;
    close $fh;
    return $n;
}

sub stop_collector {
    my ($self) = @_;
    my $pid = delete $self->{collector} or return;
    kill 'TERM', -$pid;      # the whole session: listener and connections
    waitpid $pid, 0;
}

# Forgets what the collector received so far.
sub clear_collected {
    my ($self) = @_;
    $self->write_file('collector.log', '');
    delete $self->{collected};
}

# Every request the collector received, decoded: { method, path, headers,
# body, json (the decoded body, or undef if it was not JSON) }.
#
# The log is read incrementally: tests poll it while thousands of spans
# arrive, and decoding it all again each time would cost seconds.
sub collected {
    my ($self) = @_;
    my $c = $self->{collected} //= { pos => 0, records => [], partial => '' };

    open my $fh, '<', "$self->{dir}/collector.log" or return ();
    binmode $fh;
    seek $fh, $c->{pos}, SEEK_SET;
    local $/;
    my $new = <$fh> // '';
    close $fh;
    $c->{pos} += length $new;

    $new = $c->{partial} . $new;
    my @lines = split /\n/, $new, -1;
    $c->{partial} = @lines ? pop @lines : '';   # '' after a whole line

    my $json = JSON::PP->new;
    for my $line (@lines) {
        my $r = $json->decode($line);
        # the body as the bytes received: JSON is UTF-8
        $r->{json} = eval { JSON::PP->new->utf8->decode($r->{body}) };
        $r->{json_error} = $@ if $@;
        push @{ $c->{records} }, $r;
    }
    return @{ $c->{records} };
}

# Spans from the batches answered 2xx: traces[] and agents[] items, each
# with keys added: "kind" ("trace" or "agent"), "source" ("nginx", or
# "app" for what the FastAPI app reported), "span_id", "parent_id"
# (undef for a trace item), "span_kind" ("server" or "client") and
# "attrs" (raw_data.attributes).
sub spans {
    my ($self) = @_;
    return map { @{ $_->{spans} //= [_spans_of($_)] } } $self->collected;
}

sub _spans_of {
    my ($r) = @_;
    return () unless $r->{mode} =~ /^2/ && $r->{json};
    my @s;
    my $source = ($r->{headers}{'user-agent'} // '') =~ /^ngx_vaquero_module/
                 ? 'nginx' : 'app';
    for my $t (@{ $r->{json}{traces} // [] }) {
        push @s, { %$t, kind => 'trace', source => $source,
                   span_id => $t->{raw_data}{metadata}{span_id},
                   parent_id => undef, span_kind => 'server',
                   attrs => $t->{raw_data}{attributes} };
    }
    for my $a (@{ $r->{json}{agents} // [] }) {
        push @s, { %$a, kind => 'agent', source => $source,
                   span_id => $a->{agent_id},
                   parent_id => $a->{raw_data}{parent_span_id},
                   span_kind => $a->{raw_data}{span_kind} // 'server',
                   attrs => $a->{raw_data}{attributes} };
    }
    return @s;
}

# nginx's server spans (one per request), and its client spans (one per
# upstream attempt).
sub server_spans {
    my ($self) = @_;
    return grep { $_->{source} eq 'nginx' && $_->{span_kind} eq 'server' }
           $self->spans;
}

sub client_spans {
    my ($self) = @_;
    return grep { $_->{source} eq 'nginx' && $_->{span_kind} eq 'client' }
           $self->spans;
}

# Waits until at least $n spans arrived (or $timeout seconds); returns them.
sub wait_spans {
    my ($self, $n, $timeout) = @_;
    return $self->wait_for(sub { $self->spans }, $n, $timeout);
}

# Waits until $list->() returns at least $n items (or $timeout seconds,
# default 15); returns them.
sub wait_for {
    my ($self, $list, $n, $timeout) = @_;
    my $until = time + ($timeout // 15);
    my @s;
    while (time < $until) {
        @s = $list->();
        return @s if @s >= $n;
        sleep 0.05;
    }
    return @s;
}

# OTLP requests the collector answered 2xx, each decoded into the OTLP
# JSON structure ({resourceSpans => [...]}) whether it came as JSON or as
# protobuf (decoded with sdk/tests/otlp_decode.py, which protoc and
# python3-protobuf back); each with "request", the collected record.
sub otlp_requests {
    my ($self) = @_;
    my @r = grep { $_->{path} =~ m{/v1/traces$} && $_->{mode} =~ /^2/ }
            $self->collected;

    my @proto = grep { !$_->{otlp}
                       && ($_->{headers}{'content-type'} // '')
                          eq 'application/x-protobuf' } @r;
    if (@proto) {
        my @files;
        for my $i (0 .. $#proto) {
            my $f = "$self->{dir}/otlp-body-$$-$i.bin";
            open my $fh, '>:raw', $f or die "$f: $!";
            print $fh $proto[$i]{body};
            close $fh;
            push @files, $f;
        }
        my $cmd = join ' ', $PYTHON, "$ROOT/sdk/tests/otlp_decode.py",
                            "$ROOT/sdk/tests", @files;
        my @lines = split /\n/, `$cmd 2>&1`;
        unlink @files;
        die "otlp_decode.py: @lines" if $? || @lines != @proto;
        $proto[$_]{otlp} = JSON::PP->new->utf8->decode($lines[$_])
            for 0 .. $#proto;
    }

    for my $r (@r) {
        $r->{otlp} //= $r->{json};
    }

    return map { { %{ $_->{otlp} }, request => $_ } } @r;
}

sub _otlp_value {
    my ($v) = @_;
    return $v->{stringValue} if exists $v->{stringValue};
    return $v->{intValue} + 0 if exists $v->{intValue};
    return $v->{doubleValue} if exists $v->{doubleValue};
    return $v->{boolValue} ? 1 : 0 if exists $v->{boolValue};
    return $v;
}

sub _otlp_attrs {
    my ($list) = @_;
    return { map { $_->{key} => _otlp_value($_->{value}) } @{ $list // [] } };
}

# The spans of otlp_requests(), flat: trace_id, span_id, parent_id (undef
# for none), name, kind (2 server, 3 client), attrs and resource (key =>
# value), status, start and end (ns), request.
sub otlp_spans {
    my ($self) = @_;
    my @s;
    for my $req ($self->otlp_requests) {
        for my $rs (@{ $req->{resourceSpans} }) {
            my $res = _otlp_attrs($rs->{resource}{attributes});
            for my $ss (@{ $rs->{scopeSpans} }) {
                for my $sp (@{ $ss->{spans} }) {
                    push @s, { trace_id => $sp->{traceId},
                               span_id => $sp->{spanId},
                               parent_id => $sp->{parentSpanId} || undef,
                               name => $sp->{name}, kind => $sp->{kind},
                               attrs => _otlp_attrs($sp->{attributes}),
                               status => $sp->{status}, resource => $res,
                               scope => $ss->{scope},
                               start => $sp->{startTimeUnixNano},
                               end => $sp->{endTimeUnixNano},
                               request => $req->{request} };
                }
            }
        }
    }
    return @s;
}

###########################################################################
# TLS to the collector: certificates made with openssl, and an nginx (no
# module) in front of the collector that terminates TLS, asking for a
# client certificate, and proxies to it.

# A CA, a server certificate for 127.0.0.1 and a client certificate signed
# by it, and another CA with a client certificate of its own, in
# $dir/certs/: ca.pem, server.pem/-key.pem, client.pem/-key.pem,
# other-ca.pem, other-client.pem/-key.pem.  Returns the directory.
sub make_certs {
    my ($self) = @_;
    my $d = "$self->{dir}/certs";
    return $d if -f "$d/other-client.pem";
    mkdir $d;

    my $run = sub {
        my $out = `@_ 2>&1`;
        die "openssl failed: @_\n$out" if $?;
    };

    for my $ca ('ca', 'other-ca') {
        $run->("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=$ca"
               . " -keyout $d/$ca-key.pem -out $d/$ca.pem");
    }

    my %certs = (server => ['ca', '/CN=127.0.0.1', 1],
                 client => ['ca', '/CN=vaquero-client', 0],
                 'other-client' => ['other-ca', '/CN=other-client', 0]);

    for my $name (sort keys %certs) {
        my ($ca, $subj, $server) = @{ $certs{$name} };
        $self->write_file("certs/$name.ext", $server
            ? "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
            : "extendedKeyUsage=clientAuth\n");
        $run->("openssl req -newkey rsa:2048 -nodes -subj $subj"
               . " -keyout $d/$name-key.pem -out $d/$name.csr");
        $run->("openssl x509 -req -in $d/$name.csr -CA $d/$ca.pem"
               . " -CAkey $d/$ca-key.pem -CAcreateserial -days 2"
               . " -extfile $d/$name.ext -out $d/$name.pem");
    }

    chmod 0644, glob "$d/*";
    return $d;
}

# Starts an nginx that listens with TLS on port 'tls' (server.pem),
# requires a client certificate signed by ca.pem, and proxies to the
# collector; in $dir/tls-front/.  Stopped with the test.
sub start_tls_front {
    my ($self) = @_;
    my $certs = $self->make_certs;
    my $d = "$self->{dir}/tls-front";
    mkdir $d;
    my $tls = $self->port('tls');
    my $collector = $self->port('collector');
    my $globals_http = _globals_http($d);

    open my $fh, '>', "$d/nginx.conf" or die;
    print $fh <<"END";
pid $d/nginx.pid;
error_log $d/error.log info;
worker_processes 1;
events { }
http {
$globals_http
    server {
        listen 127.0.0.1:$tls ssl;
        ssl_certificate $certs/server.pem;
        ssl_certificate_key $certs/server-key.pem;
        ssl_verify_client on;
        ssl_client_certificate $certs/ca.pem;
        client_max_body_size 64m;

        location / {
            proxy_pass http://127.0.0.1:$collector;
            proxy_set_header X-Client-Verify \$ssl_client_verify;
            proxy_set_header X-Client-DN \$ssl_client_s_dn;
        }
    }
}
END
    close $fh;

    system("$NGINX -p $d/ -c $d/nginx.conf >>$d/stderr.log 2>&1") == 0
        or die "the TLS front did not start:\n" . `cat $d/stderr.log $d/error.log`;
    $self->{tls_front} = $d;
    $self->wait_port($tls);
    return $self;
}

sub stop_tls_front {
    my ($self) = @_;
    my $d = delete $self->{tls_front} or return;
    open my $fh, '<', "$d/nginx.pid" or return;
    my $pid = <$fh>;
    close $fh;
    chomp $pid;
    return unless $pid;
    kill 'QUIT', $pid;
    for (1 .. 200) {
        last unless kill 0, $pid;
        sleep 0.05;
    }
    kill 'KILL', $pid if kill 0, $pid;
}

###########################################################################
# A FastAPI backend (t/app/app.py) under uvicorn.

# Starts t/app/app.py under uvicorn on port $opts{port} (a port name,
# default "backend"); with report => 1 the app reports its own spans to
# the collector, as a Vaquero-instrumented app does.
sub start_backend {
    my ($self, %opts) = @_;
    my $name = $opts{port} // 'backend';
    my $port = $self->port($name);
    my $dir = $self->{dir};

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        setsid();
        open STDOUT, '>>', "$dir/backend.log";
        open STDERR, '>>', "$dir/backend.log";
        delete $ENV{VAQUERO_ENDPOINT};
        if ($opts{report}) {
            $ENV{VAQUERO_ENDPOINT} = 'http://127.0.0.1:' . $self->port('collector');
            $ENV{VAQUERO_FLUSH_MS} = 50;
        }
        { exec $PYTHON, '-m', 'uvicorn', 'app:app', '--app-dir', "$ROOT/t/app",
             '--host', '127.0.0.1', '--port', $port, '--log-level', 'warning' };
        POSIX::_exit(127);
    }

    push @{ $self->{backends} }, $pid;
    $self->wait_port($port, 30);
    return $self;
}

sub stop_backend {
    my ($self) = @_;
    for my $pid (@{ delete $self->{backends} // [] }) {
        kill 'TERM', -$pid;
        waitpid $pid, 0;
    }
}

sub cleanup {
    my ($self) = @_;
    return unless $$ == $self->{owner};     # not in forked helpers
    local $?;
    my $master = $self->master_pid // $self->{master};
    if ($master && kill(0, $master)) {
        kill 'TERM', $master;
        for (1 .. 100) {
            last unless kill 0, $master;
            if ($self->{foreground}) {
                waitpid($self->{foreground}, WNOHANG);
            }
            sleep 0.05;
        }
        kill 'KILL', $master if kill 0, $master;
        delete $self->{master};
    }
    $self->stop_collector;
    $self->stop_backend;
    $self->stop_tls_front;
}

sub DESTROY {
    my ($self) = @_;
    $self->cleanup;
}

END {
    $_->cleanup for grep { defined } @instances;
}

###########################################################################
# HTTP client: raw requests over loopback.

sub http {
    my ($port, $request) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 10)
        or die "connect $port: $!";
    binmode $s;
    print $s $request;
    local $/;
    my $reply = <$s>;
    close $s;
    return $reply // '';
}

# $count HTTP/1.1 GETs over one kept-alive connection; returns the statuses.
sub http_keepalive {
    my ($port, $uri, $count) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 10)
        or die "connect $port: $!";
    binmode $s;
    my @status;
    for (1 .. $count) {
        print $s "GET $uri HTTP/1.1\r\nHost: localhost\r\n\r\n";
        my $head = '';
        while ($head !~ /\r\n\r\n/) {
            sysread($s, my $c, 1) or die "connection closed";
            $head .= $c;
        }
        my ($len) = $head =~ /Content-Length: (\d+)/i;
        read($s, my $body, $len // 0);
        push @status, $head =~ m{^HTTP/1.1 (\d+)};
    }
    close $s;
    return @status;
}

sub http_get {
    my ($port, $uri, %h) = @_;
    my $headers = join '', map { "$_: $h{$_}\r\n" } sort keys %h;
    return http($port, "GET $uri HTTP/1.0\r\nHost: localhost\r\n$headers\r\n");
}

# a vaquero_status page (JSON) at $uri (/status) on $port, decoded
sub status_json {
    my ($port, $uri) = @_;
    my ($body) = http_get($port, $uri // '/status') =~ /\r\n\r\n(.*)$/s;
    return decode_json($body);
}

sub http_post {
    my ($port, $uri, $body, %h) = @_;
    my $headers = join '', map { "$_: $h{$_}\r\n" } sort keys %h;
    return http($port, "POST $uri HTTP/1.0\r\nHost: localhost\r\n$headers"
                       . "Content-Length: " . length($body) . "\r\n\r\n$body");
}

1;

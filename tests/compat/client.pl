# IO::Socket::INET with LocalAddr 127.0.0.1, N times over three echo servers, one line echoed each.
use strict; use warnings; use IO::Socket::INET;
my ($n, $hold) = @ARGV;
my (@socks, %errs);
for my $i (0 .. $n - 1) {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', PeerAddr => '127.0.0.' . (2 + $i % 3),
                                  PeerPort => 7, Proto => 'tcp');
    unless ($s) { $errs{$@ || $!}++; next; }
    print $s "ping\n";
    my $line = <$s>;
    push @socks, $s if defined $line && $line eq "ping\n";
}
select(undef, undef, undef, $hold);
printf "result ok=%d fail=%d\n", scalar @socks, $n - @socks;
print "errors ", (join(' ', map { "$errs{$_} $_" } keys %errs) || 'none'), "\n";

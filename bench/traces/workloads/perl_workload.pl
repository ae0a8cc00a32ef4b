# The perl workload recorded into bench/traces/perl-text.rep: word counts
# over generated text, hashes of arrays, string building, sorting.
use strict;
use warnings;
my @words = map { join('', map { chr(97 + ($_ * 7 + length($_)) % 26) } 1 .. ($_ % 9 + 2)) } 1 .. 4000;
my %count;
my %by_len;
for my $round (1 .. 5) {
    for my $w (@words) {
        $count{$w . $round % 3}++;
        push @{ $by_len{ length $w } }, $w;
    }
}
my $text = join(' ', map { "$_=$count{$_}" } sort keys %count);
my @sorted = sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count;
printf "%d %d %d %s\n", length($text), scalar(keys %by_len), scalar(@sorted), $sorted[0];

# Print runs of lines that differ only in their numbers (a kernel warning every few seconds for the
# rest of a wedged boot) as the first, a count and the last: awk -f collapse.awk FILE
function flush() { if (n > 1) print "    ... " n - 1 " more like it ..."; if (n) print last }
{ k = $0; gsub(/ *[0-9]+/, "#", k) }
k == prev { n++; last = $0; next }
{ flush(); print; prev = k; n = 0 }
END { flush() }

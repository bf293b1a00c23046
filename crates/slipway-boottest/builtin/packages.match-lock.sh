#!/bin/sh
# The host writes the compose's lock to $SLIPWAY_DATA/lock.tsv (name, version, architecture; sorted).
# Only packages dpkg considers installed ("ii") count.
found=$(mktemp)
expected=$(mktemp)
dpkg-query -W -f '${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n' |
    awk 'BEGIN { FS = "\t" } $1 ~ /^ii/ { print $2 "\t" $3 "\t" $4 }' | LC_ALL=C sort >"$found"
LC_ALL=C sort "$SLIPWAY_DATA/lock.tsv" >"$expected"
count=$(wc -l <"$found")
if [ "$count" -eq 0 ]; then
    echo "dpkg-query reported no installed packages"
    exit 1
fi
differences=$(LC_ALL=C comm -3 "$expected" "$found" |
    awk 'BEGIN { FS = "\t" }
         /^\t/ { sub(/^\t/, ""); split($0, f, "\t"); print "unexpected " f[1] ":" f[3] " " f[2]; next }
         { print "missing " $1 ":" $3 " " $2 }')
if [ -z "$differences" ]; then
    echo "all $count installed packages match the lock"
else
    echo "$differences"
    echo "$(printf '%s\n' "$differences" | wc -l) difference(s) from the lock:" $(printf '%s\n' "$differences" | head -n 10)
    exit 1
fi

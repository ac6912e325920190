#!/bin/bash
# tree_bash: a bash loop with children, as scripts are: a background child that lives on
# (`sleep 1000 &`, checked with kill -0 each round), a pipeline in a command substitution
# (`echo | tr`, its output checked against the same mapping done in bash), and an external
# sleep. Usage: tree_bash.sh STATUS_FILE. The counter lives in bash; the status file is
# written through a new file renamed over it.
set -u
status=$1
count=0
failure=""
sleep 1000 &
background=$!
while :; do
  count=$((count + 1))
  out=$(echo "$count" | tr 0-9 a-j)
  expected=$count
  for d in 0 1 2 3 4 5 6 7 8 9; do
    letters=abcdefghij
    expected=${expected//$d/${letters:$d:1}}
  done
  [[ -z $failure && $out != "$expected" ]] && failure="pipeline gave '$out' for $count, expected '$expected'"
  [[ -z $failure ]] && ! kill -0 "$background" 2>/dev/null && failure="the background child $background is gone"
  if [[ -n $failure ]]; then
    echo "FAIL $failure" >"$status.tmp"
  else
    echo "ok $count" >"$status.tmp"
  fi
  mv -f "$status.tmp" "$status"
  sleep 0.05
done

#!/bin/bash
# bash_loop: a bash loop that uses only builtins (no fork: part 1 checkpoints one process).
# Usage: bash_loop.sh STATUS_FILE. It keeps a counter with a shadow (count*7+3) that must
# agree, and a 64-slot array whose running sum is re-checked every 10 iterations.
# bash has no builtin rename or sleep, so:
#  - the status is written with one printf into the file opened with O_TRUNC (one small
#    write(); a reader may briefly see an empty file, which the harness treats as "not yet");
#  - the 50 ms pause is a busy wait on $EPOCHREALTIME with arithmetic.
set -u
if [[ $# -lt 1 || $1 != /* ]]; then
  echo "usage: bash_loop.sh STATUS_FILE (absolute path)" >&2
  exit 2
fi
status=$1
count=0
shadow=3
declare -a ring
ring_sum=0
for ((i = 0; i < 64; i++)); do
  ring[i]=$((i * 31 + 7))
  ((ring_sum += ring[i]))
done
failure=""

now_us() {  # microseconds since the epoch, from the builtin variable (no fork)
  local t=${EPOCHREALTIME/./}
  REPLY=$((10#$t))
}

while :; do
  ((count++))
  ((shadow = count * 7 + 3))
  slot=$((count % 64))
  old=${ring[slot]}
  new=$(((old * 17 + count) % 100003))
  ring[slot]=$new
  ((ring_sum += new - old))
  if [[ -z $failure ]]; then
    if ((shadow != count * 7 + 3)); then failure="shadow $shadow does not match count $count"; fi
    if ((count % 10 == 0)); then
      s=0
      for v in "${ring[@]}"; do ((s += v)); done
      if ((s != ring_sum)); then failure="ring sum $s, expected $ring_sum"; fi
    fi
  fi
  if [[ -n $failure ]]; then
    printf 'FAIL %s\n' "$failure" >"$status"
  else
    printf 'ok %d\n' "$count" >"$status"
  fi
  now_us
  end=$((REPLY + 50000))
  while now_us; ((REPLY < end)); do :; done
done

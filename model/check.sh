#!/usr/bin/env bash
# model/check.sh -- run the SPIN model of the entry protocol (dax_entry.pml).
#
#   model/check.sh [SUITE...]      default suites: ours bug2016 async
#
# Suites (each run prints one PASS/FAIL line with the state-space size):
#   ours      (= ours-pte ours-pmd) our protocol, PTE and PMD: (1)(2)(3) in one safety run per
#             geometry, (4) in a weak-fairness acceptance run, and the futex
#             lock itself on the PMD geometry. Every property must hold.
#   bug2016   the 2016 ordering, PTE and PMD: property (1) must FAIL.
#   async     the async tracker (WP_ASYNC writers, harvest before tagging),
#             PTE and PMD: (2)(3) and (4); the entry and harvest locks'
#             futex protocols: (2)(3) on PMD, (4) (no lost wake-up) on one
#             page; with the harvest lock removed (HLOCK=0) (2) must FAIL.
#   mutants   deliberately broken protocols: each must fail the named
#             property (shows the properties are not vacuous).
#   findings  open questions found by the model (summary bit, partial
#             mprotect failure) and their fixes; see README.md.
#   full      larger runs (three PTE entries with the whole-mapping last
#             resort, futex lock on two entries, (4) with the VMA fallback).
#             Minutes, not seconds; not run by the test.
#   trail     write the shortest 2016 counterexample (spin -t -p) to
#             $OUT/bug2016-trail/raw.txt (model/race-2016.trail.txt is the
#             annotated copy of it), and the shortest harvest-lock-removed
#             one to $OUT/no-hlock-trail/raw.txt (model/no-harvest-lock.trail.txt).
#
# A run expected to fail passes only if pan wrote its counterexample (the
# .trail file in the run's work directory; replay it with spin -t -p).
# Exit status: 0 when every run matched its expectation, 1 otherwise, 2 when
# spin or gcc is missing. Work files go to $UDAX_MODEL_OUT (default: a fresh
# temporary directory, removed at exit unless UDAX_MODEL_KEEP=1).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
MODEL="$HERE/dax_entry.pml"

for tool in spin gcc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "check.sh: '$tool' not found. Install it: apt-get install -y spin gcc" >&2
    exit 2
  fi
done

if [[ -n "${UDAX_MODEL_OUT:-}" ]]; then
  OUT="$UDAX_MODEL_OUT"; mkdir -p "$OUT"
else
  OUT="$(mktemp -d "${TMPDIR:-/tmp}/udax-model.XXXXXX")"
  [[ "${UDAX_MODEL_KEEP:-0}" == 1 ]] || trap 'rm -rf "$OUT"' EXIT
fi

passed=0
failed=0

# Geometries (see the header of dax_entry.pml).
PTE="-DNE=2 -DPPE=1 -DBLK=2"          # 2 PTE entries; the 2 MiB block is both
PTE3="-DNE=3 -DPPE=1 -DBLK=2"         # blocks {0,1},{2}: whole-mapping last resort
PMD="-DNE=1 -DPPE=2 -DBLK=1"          # 1 PMD entry covering 2 pages
PMD2="-DNE=2 -DPPE=2 -DBLK=1"         # 2 PMD entries
ONE="-DNE=1 -DPPE=1 -DBLK=1"          # 1 page: enough for the locks' wake-ups

SAFETY_CC="-DSAFETY -DNOCLAIM"        # (1) monitor + (2) assert + (3) end states
LIVE_CC="-DNFAIR=3 -DCOLLAPSE"        # (4): ltl p4 with -a -f

# Which property a pan report violates.
classify() {
  local log="$1"
  if grep -q "^pan:[0-9]*: acceptance cycle" "$log"; then echo 4           # sync never returns
  elif grep -q "^pan:[0-9]*: invalid end state" "$log"; then echo 3        # deadlock
  elif grep -q "^pan:[0-9]*: assertion violated (tobl" "$log"; then echo 2 # sync() return
  elif grep -q "^pan:[0-9]*: assertion violated" "$log"; then echo 1       # BAD monitor / ltl p1
  else echo "?"
  fi
}

# run NAME EXPECT "SPIN_DEFS" "CC_FLAGS" "PAN_ARGS"
#   EXPECT: pass, or fail:N (property N must be violated).
run() {
  local name="$1" expect="$2" defs="$3" cc="$4" args="$5"
  local dir="$OUT/$name"
  rm -rf "$dir"; mkdir -p "$dir"; cp "$MODEL" "$dir/"
  local t0=$SECONDS
  # shellcheck disable=SC2086
  if ! (cd "$dir" && spin $defs -a dax_entry.pml >spin.log 2>&1) || grep -qi "error" "$dir/spin.log"; then
    echo "FAIL $name: spin -a failed:"; sed 's/^/  /' "$dir/spin.log" | head -20
    failed=$((failed + 1)); return
  fi
  # shellcheck disable=SC2086
  if ! (cd "$dir" && gcc -O2 -w -DMEMLIM=8000 $cc -o pan pan.c >gcc.log 2>&1); then
    echo "FAIL $name: gcc failed:"; sed 's/^/  /' "$dir/gcc.log" | head -20
    failed=$((failed + 1)); return
  fi
  # shellcheck disable=SC2086
  (cd "$dir" && ./pan -m1000000 $args >pan.log 2>&1) || true
  local log="$dir/pan.log" secs=$((SECONDS - t0))
  local errors stored trans depth ptime
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$log" | tail -1)
  stored=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$log" | tail -1)
  trans=$(sed -n 's/^ *\([0-9.e+]*\) transitions.*/\1/p' "$log" | tail -1)
  [[ -n "$trans" ]] || trans=$(sed -n 's/.*stored (\([0-9.e+]*\) visited).*/\1 visited/p' "$log" | tail -1)
  depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' "$log" | tail -1)
  ptime=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\).*/\1/p' "$log" | tail -1)
  local stats="states=${stored:-?} transitions=${trans:-?} depth=${depth:-?} pan=${ptime:-?}s wall=${secs}s"
  if [[ -z "$errors" ]]; then
    echo "FAIL $name: pan did not finish ($stats)"; tail -5 "$log" | sed 's/^/  /'
    failed=$((failed + 1)); return
  fi
  if grep -Eq "max search depth too small|out of memory|Search not completed" "$log" && [[ "$errors" == 0 ]]; then
    echo "FAIL $name: search incomplete ($stats)"; grep -E "too small|out of memory|not completed" "$log" | sed 's/^/  /'
    failed=$((failed + 1)); return
  fi
  if [[ "$errors" == 0 ]]; then
    if [[ "$expect" == pass ]]; then
      echo "PASS $name: all properties hold ($stats)"; passed=$((passed + 1))
    else
      echo "FAIL $name: expected property ${expect#fail:} to fail, but it holds ($stats)"; failed=$((failed + 1))
    fi
    return
  fi
  local prop; prop=$(classify "$log")
  if [[ "$expect" == "fail:$prop" && ! -s "$dir/dax_entry.pml.trail" ]]; then
    echo "FAIL $name: property ($prop) fails as expected, but pan wrote no trail ($stats)"; failed=$((failed + 1))
  elif [[ "$expect" == "fail:$prop" ]]; then
    echo "PASS $name: property ($prop) fails as expected, with a trail ($stats)"; passed=$((passed + 1))
  else
    echo "FAIL $name: property ($prop) violated, expected $expect ($stats)"
    grep -E "violated|invalid end state|acceptance cycle" "$log" | head -3 | sed 's/^/  /'
    echo "  trail: cd $dir && spin $defs -t -p dax_entry.pml"
    failed=$((failed + 1))
  fi
}

# The protocol as implemented: exact DIRTY counts per group (SUMMARY=2), the
# writable flags set before mprotect RW (FLAG_FIRST=1), and an mprotect RW
# that may fail with ENOMEM after changing part of its range.
IMPL="-DSUMMARY=2 -DFLAG_FIRST=1 -DPARTIAL_ENOMEM=1"
suite_ours_pte() {
  run pte-safety      pass "-DFUTEX=0 $IMPL $PTE" "$SAFETY_CC" ""
  run pte-liveness    pass "-DFUTEX=0 -DVMA=0 $IMPL $PTE" "$LIVE_CC" "-a -f -N p4"
}
suite_ours_pmd() {
  run pmd-safety      pass "-DFUTEX=0 $IMPL $PMD" "$SAFETY_CC" ""
  run pmd-futex       pass "-DFUTEX=1 $IMPL $PMD" "$SAFETY_CC" ""
  run pmd-liveness    pass "-DFUTEX=0 $IMPL $PMD" "$LIVE_CC" "-a -f -N p4"
}

# Property (1) alone, as the LTL formula ltl p1 (CHECK=3: no other asserts).
suite_bug2016() {
  run bug2016-pte fail:1 "-DBUG2016=1 -DFUTEX=0 -DCHECK=3 $PTE" "-DSAFETY" "-N p1"
  run bug2016-pmd fail:1 "-DBUG2016=1 -DFUTEX=0 -DCHECK=3 $PMD" "-DSAFETY" "-N p1"
}

# The async tracker (ASYNC=1): no property (1) (writers store without the
# entry lock by design); (2) and (3) in the safety run, (4) in the liveness run.
ASYNC_IMPL="-DASYNC=1 -DSUMMARY=2"
suite_async() {
  run async-pte-safety   pass   "-DFUTEX=0 $ASYNC_IMPL $PTE" "$SAFETY_CC" ""
  run async-pmd-futex    pass   "-DFUTEX=1 $ASYNC_IMPL $PMD" "$SAFETY_CC" ""
  run async-pmd-liveness pass   "-DFUTEX=0 $ASYNC_IMPL $PMD" "$LIVE_CC" "-a -f -N p4"
  run async-futex-liveness pass "-DFUTEX=1 $ASYNC_IMPL $ONE" "$LIVE_CC" "-a -f -N p4"
  run async-no-hlock-pte fail:2 "-DFUTEX=0 -DHLOCK=0 $ASYNC_IMPL $PTE" "$SAFETY_CC" ""
  run async-no-hlock-pmd fail:2 "-DFUTEX=0 -DHLOCK=0 $ASYNC_IMPL $PMD" "$SAFETY_CC" ""
}

suite_mutants() {
  run mutant-wake-one-deadlock fail:3 "-DFUTEX=1 -DWAKE_ONE=1 $PMD" "$SAFETY_CC" ""
  run mutant-wake-one-liveness fail:4 "-DFUTEX=1 -DWAKE_ONE=1 $PMD" "$LIVE_CC" "-a -f -N p4"
  run mutant-fence-late        fail:2 "-DFUTEX=0 -DFENCE_LATE=1 $PMD" "$SAFETY_CC" ""
  run mutant-no-snapshot       fail:4 "-DFUTEX=0 -DNO_SNAPSHOT=1 $PMD" "$LIVE_CC" "-a -f -N p4"
  run mutant-2016-store-lost   fail:2 "-DFUTEX=0 -DBUG2016=1 -DCHECK=2 $PTE" "$SAFETY_CC" ""
  run mutant-harvest-late      fail:2 "-DFUTEX=0 -DHARVEST_LATE=1 $ASYNC_IMPL $PTE" "$SAFETY_CC" ""
  run mutant-hlock-no-wake     fail:4 "-DFUTEX=1 -DHLOCK_NO_WAKE=1 $ASYNC_IMPL $ONE" "$LIVE_CC" "-a -f -N p4"
  run mutant-redirty-ignored   fail:2 "-DFUTEX=0 -DREDIRTY_IGNORED=1 $ASYNC_IMPL $PTE" "$SAFETY_CC" ""
}

suite_findings() {
  run finding-summary-bit      fail:2 "-DFUTEX=0 -DSUMMARY=1 $PTE" "$SAFETY_CC" ""
  run finding-summary-counter  pass   "-DFUTEX=0 -DSUMMARY=2 $PTE" "$SAFETY_CC" ""
  run finding-partial-enomem   fail:1 "-DFUTEX=0 -DPARTIAL_ENOMEM=1 $PMD" "$SAFETY_CC" ""
  run finding-flag-first       pass   "-DFUTEX=0 -DPARTIAL_ENOMEM=1 -DFLAG_FIRST=1 $PMD" "$SAFETY_CC" ""
  run finding-flag-first-pte   pass   "-DFUTEX=0 -DPARTIAL_ENOMEM=1 -DFLAG_FIRST=1 $PTE" "$SAFETY_CC" ""
}

suite_full() {
  run full-pte-ltl-p1    pass "-DFUTEX=0 -DCHECK=3 $PTE" "-DSAFETY" "-N p1"
  # > 1.7e8 states (not finished in 6 min, ~9 GB with COLLAPSE): hash-compact.
  run full-pte3-safety   pass "-DFUTEX=0 $PTE3" "$SAFETY_CC -DHC4 -DMEMLIM=20000" "-w30"
  run full-pmd2-safety   pass "-DFUTEX=0 $PMD2" "$SAFETY_CC -DCOLLAPSE" "-w28"
  run full-pte-futex     pass "-DFUTEX=1 -DVMA=0 $PTE" "$SAFETY_CC -DCOLLAPSE" "-w28"
  run full-pte-liveness  pass "-DFUTEX=0 $PTE" "$LIVE_CC" "-a -f -N p4"
  run full-pmd-futex-liveness pass "-DFUTEX=1 $PMD" "$LIVE_CC" "-a -f -N p4"
  run full-async-pte-futex pass "-DFUTEX=1 $ASYNC_IMPL $PTE" "$SAFETY_CC" ""
  run full-async-pmd-futex-liveness pass "-DFUTEX=1 $ASYNC_IMPL $PMD" "$LIVE_CC" "-a -f -N p4"
}

# Shortest (breadth-first) 2016 counterexample, replayed with spin -t -p.
suite_trail() {
  local defs="-DBUG2016=1 -DFUTEX=0 -DVMA=0 -DCHECK=1 $PTE"
  run bug2016-trail fail:1 "$defs" "$SAFETY_CC -DBFS" ""
  # shellcheck disable=SC2086
  (cd "$OUT/bug2016-trail" && spin $defs -t -p -g -l dax_entry.pml >raw.txt 2>&1) || true
  echo "trail: $OUT/bug2016-trail/raw.txt"
  defs="-DASYNC=1 -DHLOCK=0 -DSUMMARY=2 -DFUTEX=0 $PTE"
  run no-hlock-trail fail:2 "$defs" "$SAFETY_CC -DBFS" ""
  # shellcheck disable=SC2086
  (cd "$OUT/no-hlock-trail" && spin $defs -t -p -g -l dax_entry.pml >raw.txt 2>&1) || true
  echo "trail: $OUT/no-hlock-trail/raw.txt"
}

suites=("$@")
[[ ${#suites[@]} -gt 0 ]] || suites=(ours bug2016 async)
for s in "${suites[@]}"; do
  case "$s" in
    ours) suite_ours_pte; suite_ours_pmd ;;
    ours-pte|ours-pmd) "suite_${s//-/_}" ;;
    bug2016|async|mutants|findings|full|trail) "suite_$s" ;;
    all) suite_ours_pte; suite_ours_pmd; suite_bug2016; suite_async; suite_mutants; suite_findings ;;
    *) echo "check.sh: unknown suite '$s' (ours ours-pte ours-pmd bug2016 async mutants findings full trail all)" >&2; exit 2 ;;
  esac
done

echo "model: $passed passed, $failed failed"
[[ "$failed" == 0 ]]

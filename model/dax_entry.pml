/*
 * dax_entry.pml -- SPIN model of udax's entry protocol: write fault vs writeback.
 *
 * What is modelled, the abstractions, the step -> function table, how to run
 * and the measured state spaces: model/README.md. Run it with model/check.sh.
 * Each step below is tagged with the function that implements it.
 *
 * Configuration (spin -DNAME=value):
 *   NE, PPE, BLK  geometry: NE entries of PPE pages each (PPE > 1: PMD
 *                 entries, one entry covering several pages); coarsening
 *                 unprotects aligned blocks of BLK entries. check.sh uses
 *                 PTE NE=2 PPE=1 BLK=2, PMD NE=1 PPE=2 BLK=1 (and, in its
 *                 `full` suite, NE=3 BLK=2 and NE=2 PPE=2). Without them:
 *                 PMD=0 -> NE=3 PPE=1 BLK=2; PMD=1 -> NE=2 PPE=2 BLK=1.
 *   FUTEX=1|0     1: the entry lock as implemented (CAS, WAITERS, futex
 *                 wait/wake, owner id); 0: an abstract blocking mutex.
 *   CHECK=0..3    which asserts are compiled in (0: all).
 *   BIND=1|0      1: writer tid stores through mapping tid-1 only.
 *   EXITS=0|1     1: writers may also exit.
 *   BUG2016=0|1   1: the 2016 fault ordering: lock, DIRTY, unlock, THEN make
 *                 writable (outside the lock). Must fail property (1).
 *   VMA=0|1       the VMA-budget fallback (coarsening), default 1.
 *   SUMMARY=0|1|2 the per-group dirty summary that lets tagging skip clean
 *                 groups. 0: none (tagging scans every entry; default).
 *                 1: a bit, set by entry_set_dirty() after DIRTY; tagging
 *                 clears it, scans, sets it again if it found DIRTY entries.
 *                 2: a counter of DIRTY entries (+1 on clean->DIRTY, -1 on
 *                 DIRTY->clean); tagging skips the group while it is 0.
 *   ASYNC=0|1     1: the async tracker (userfaultfd WP_ASYNC + PAGEMAP_SCAN,
 *                 native/uffd.cc) instead of the sigsegv fault path: a store
 *                 to a write-protected page is resolved by the kernel with
 *                 no entry lock (the page becomes written and writable), and
 *                 every sync first harvests: scan-and-write-protect the
 *                 written pages of every mapping, then DIRTY their entries.
 *                 Property (1) does not apply (writers never take the lock);
 *                 (2), (3) and (4) do.
 *   HLOCK=1|0     with ASYNC: the per-file harvest lock around the harvest
 *                 (default 1; with FUTEX=1 its futex protocol as
 *                 implemented). 0 must fail property (2).
 *   Mutants, used by check.sh only to show that each property can fail:
 *   HARVEST_LATE=1 with ASYNC: sync tags before it harvests.
 *   HLOCK_NO_WAKE=1 with ASYNC, FUTEX=1: harvest_unlock() never wakes.
 *   REDIRTY_IGNORED=1 with ASYNC: a writeback's clearDirty clears the DIRTY
 *                 a harvest set while the writeback held the lock.
 *   WAKE_ONE=1    unlock wakes one sleeper (and still clears WAITERS).
 *   FENCE_LATE=1  clearDirty() before the sfence.
 *   NO_SNAPSHOT=1 sync re-scans "while anything is DIRTY" (no TOWRITE list).
 *   Open question (README): PARTIAL_ENOMEM=1 lets an mprotect RW that fails
 *   with ENOMEM leave a prefix of its range changed (Linux does);
 *   FLAG_FIRST=1 sets the writable flags before that mprotect.
 */

#ifndef PMD
#define PMD 0
#endif
#ifndef BUG2016
#define BUG2016 0
#endif
#ifndef VMA
#define VMA 1
#endif
#ifndef SUMMARY
#define SUMMARY 0
#endif
#ifndef FUTEX
#define FUTEX 1
#endif
#ifndef CHECK
#define CHECK 0        /* asserts: 0 all; 1 only (1); 2 only (2); 3 none (use ltl p1) */
#endif
#ifndef EXITS
#define EXITS 0
#endif
#ifndef WAKE_ONE
#define WAKE_ONE 0
#endif
#ifndef FENCE_LATE
#define FENCE_LATE 0
#endif
#ifndef NO_SNAPSHOT
#define NO_SNAPSHOT 0
#endif
#ifndef PARTIAL_ENOMEM
#define PARTIAL_ENOMEM 0
#endif
#ifndef FLAG_FIRST
#define FLAG_FIRST 0
#endif
#ifndef ASYNC
#define ASYNC 0
#endif
#ifndef HARVEST_LATE
#define HARVEST_LATE 0
#endif
#ifndef HLOCK_NO_WAKE
#define HLOCK_NO_WAKE 0
#endif
#ifndef HLOCK
#define HLOCK 1
#endif

/* ---- geometry ---------------------------------------------------------- */
#ifndef NE
#if PMD
#define NE  2          /* entries (2 MiB each)                              */
#define PPE 2          /* pages per entry: one PMD entry covers 2 pages      */
#define BLK 1          /* entries per aligned 2 MiB block                    */
#else
#define NE  3          /* entries (4 KiB each)                              */
#define PPE 1
#define BLK 2          /* blocks: {0,1} and {2} (the file's tail block)     */
#endif
#endif
#define NP  (NE * PPE) /* pages of the file                                  */
#define NM  2          /* shared mappings of the file                        */
#define NS  2          /* sync threads, one sync() each                      */
#define NT  5          /* thread ids: 1, 2 writers; 3, 4 syncs (0 unused)    */

/* ---- the entry word (native/entry.h; owner tid in bits 4..7 here) ------ */
#define LOCKED  1
#define DIRTY   2
#define TOWRITE 4
#define WAITERS 8
#define OWNER_SHIFT 4
#define REDIRTY 128    /* ASYNC: DIRTY set by a harvest while another thread
                        * held the lock: its clean must keep DIRTY          */

byte ent[NE];          /* entry words                                          */
bit  prot[NM * NP];    /* page protection per mapping: 1 = PROT_READ|PROT_WRITE;
                        * ASYNC: 1 = the PTE is not uffd-write-protected, which
                        * is what PAGEMAP_SCAN reports as PAGE_IS_WRITTEN (the
                        * mappings are armed at map time: all 0)            */
bit  wflag[NM * NE];   /* udax_region.writable[]: entry mapped RW here          */
byte sleeping[NT];     /* futex: 0 = running, e+1 = asleep on ent[e]            */
#if SUMMARY
byte summary;          /* the one entry group's summary (bit or counter)       */
#endif
#if ASYNC && HLOCK
byte hlock;            /* the file's harvest lock word: 0 free, 1 held (the
                        * holder's tag), 2 held with WAITERS (FUTEX=1;
                        * FUTEX=0: 0 free, 1 held)                           */
#define HSLEEP (NE + 1) /* sleeping[tid] == HSLEEP: asleep on the harvest word */
#endif

/* ---- ghost state for property (2): one tracked store ------------------- */
/* Any completed store may be chosen, nondeterministically, as the tracked
 * store (so every store is checked on some path). Its cache line is INCACHE
 * (stored, not clwb'd) or INFLIGHT (clwb'd by sync thread tflusher, not yet
 * fenced by that thread); that thread's sfence makes it durable and resets
 * the tracker to NONE. A sync that begins while the tracked store is not
 * durable owes it (tobl[s]); sync() asserts on return that it was paid. */
#define T_NONE     0
#define T_INCACHE  1
#define T_INFLIGHT 2
byte tstate = T_NONE;
byte tpage;
byte tflusher;
bit  tobl[NS];
byte syncs_done;       /* sync threads that returned (property 4)             */

/* ---- property (1): a page writable in some mapping while its entry is
 * neither DIRTY nor LOCKED ----------------------------------------------- */
#define ENT(p) ((p) / PPE)
#define BADP(m, p) (prot[(m) * NP + (p)] && ((ent[ENT(p)] & (DIRTY | LOCKED)) == 0))
#define BADPG(p) (BADP(0, p) || BADP(1, p))
#if NP == 1
#define BAD (BADPG(0))
#define PICK_PAGE p = 0
#elif NP == 2
#define BAD (BADPG(0) || BADPG(1))
#define PICK_PAGE if :: p = 0 :: p = 1 fi
#elif NP == 3
#define BAD (BADPG(0) || BADPG(1) || BADPG(2))
#define PICK_PAGE if :: p = 0 :: p = 1 :: p = 2 fi
#elif NP == 4
#define BAD (BADPG(0) || BADPG(1) || BADPG(2) || BADPG(3))
#define PICK_PAGE if :: p = 0 :: p = 1 :: p = 2 :: p = 3 fi
#else
#error "NE*PPE must be 1..4"
#endif

/* (1) as an invariant monitor: in any reachable state where BAD holds the
 * monitor can step and fail; blocked here is a valid end state. The same
 * property as LTL (ltl p1) for a cross-check: ./pan -N p1. */
#if (CHECK == 0 || CHECK == 1) && !ASYNC
active proctype monitor() {
end: atomic { BAD -> assert(!BAD) }
}
#endif
ltl p1 { [] !BAD }                      /* (1) writable => DIRTY or LOCKED   */
ltl p4 { <> (syncs_done == NS) }        /* (4) both syncs return (with -f)   */
/* (2) is the assert at the end of sync(); (3) is pan's invalid-end-state
 * (deadlock) check: no state where no thread can move but some thread is
 * not at a valid end. */

/* ======================================================================== */
/* Entry lock: native/futex.cc entry_lock()/entry_unlock() (src/entry.ts).   */
/* ======================================================================== */

/* entry_lock(): CAS LOCKED|owner in; if locked, CAS WAITERS in and
 * futex_wait_word() on the value seen. A CAS that fails because the word
 * changed retries, so each CAS is one atomic step, taken only if it succeeds. */
#if FUTEX
inline entry_lock(e) {
  do
  :: atomic { (ent[e] & LOCKED) == 0 ->                        /* CAS acquire */
        ent[e] = ent[e] | LOCKED | (tid << OWNER_SHIFT); break }
  :: atomic { (ent[e] & LOCKED) != 0 ->                        /* CAS WAITERS */
        ent[e] = ent[e] | WAITERS; seen = ent[e] }
     atomic {                                         /* futex_wait_word(w, v) */
        if
        :: ent[e] == seen -> sleeping[tid] = e + 1
        :: else                                               /* EAGAIN: retry */
        fi; seen = 0 }
     sleeping[tid] == 0                                       /* until woken */
  od
}

/* entry_unlock(): fetch_and clears LOCKED, WAITERS and the owner; if WAITERS
 * was set, futex_wake_word() wakes every sleeper (INT_MAX). */
inline entry_unlock(e) {
  atomic {
    if
    :: (ent[e] & WAITERS) -> ent[e] = ent[e] & (DIRTY | TOWRITE); old = 1
    :: else -> ent[e] = ent[e] & (DIRTY | TOWRITE)
    fi }
  if
  :: old ->
#if WAKE_ONE
     atomic {
        if
        :: sleeping[1] == e + 1 -> sleeping[1] = 0
        :: sleeping[2] == e + 1 -> sleeping[2] = 0
        :: sleeping[3] == e + 1 -> sleeping[3] = 0
        :: sleeping[4] == e + 1 -> sleeping[4] = 0
        :: else
        fi; old = 0 }
#else
     d_step {
        if :: sleeping[1] == e + 1 -> sleeping[1] = 0 :: else fi;
        if :: sleeping[2] == e + 1 -> sleeping[2] = 0 :: else fi;
        if :: sleeping[3] == e + 1 -> sleeping[3] = 0 :: else fi;
        if :: sleeping[4] == e + 1 -> sleeping[4] = 0 :: else fi;
        old = 0 }
#endif
  :: else
  fi
}

#else
/* FUTEX=0: the lock as an abstract blocking mutex (a thread waits, without
 * spinning, until LOCKED is clear). Sound when FUTEX=1 runs show the futex
 * lock has no lost wake-ups (check.sh does, on a smaller geometry). */
inline entry_lock(e) {
  atomic { (ent[e] & LOCKED) == 0 -> ent[e] = ent[e] | LOCKED }
}
inline entry_unlock(e) {
  ent[e] = ent[e] & ~(LOCKED | REDIRTY)
}
#endif

/* entry_lock(i) then entry_set_dirty(i) (fetch_or DIRTY, then the summary).
 * With FUTEX=0 the DIRTY store is folded into the acquiring step: between
 * the two, other threads can only read DIRTY without the lock (tagging), and
 * such a read commutes with the acquire. */
inline lock_dirty(e) {
#if FUTEX
  entry_lock(e);
  atomic { if :: (ent[e] & DIRTY) == 0 -> old = 1 :: else fi; ent[e] = ent[e] | DIRTY };
#else
  atomic { (ent[e] & LOCKED) == 0 ->
           if :: (ent[e] & DIRTY) == 0 -> old = 1 :: else fi; ent[e] = ent[e] | LOCKED | DIRTY };
#endif
#if SUMMARY == 1
  atomic { summary = 1; old = 0 };
#elif SUMMARY == 2
  atomic { if :: old -> summary++ :: else fi; old = 0 };
#else
  old = 0;
#endif
}

/* ======================================================================== */
/* Fault path: native/fault.cc                                               */
/* ======================================================================== */

/* region_set_prot(r, elo, ehi, true): mprotect RW entries [elo, ehi] in
 * mapping m and set their writable flags, as one atomic step (a store racing
 * with the mprotect lands before or after it). ok = 0 on ENOMEM, possible at
 * any call when the VMA budget is modelled; then no flag is set and nothing
 * changed, except with PARTIAL_ENOMEM, where a proper prefix of the range
 * may already be RW (Linux mprotect does this), and with FLAG_FIRST the flags
 * are set before the mprotect, so also on failure. */
inline region_set_rw(m, elo, ehi) {
  atomic {
    ok = 1;
#if VMA
    if :: ok = 0 :: skip fi;                         /* ENOMEM, or success */
#endif
    k = elo * PPE;
    do
    :: k <= ehi * PPE + PPE - 1 && ok -> prot[m * NP + k] = 1; k++
#if VMA && PARTIAL_ENOMEM
    :: k <= ehi * PPE + PPE - 1 && ok && k > elo * PPE -> ok = 0   /* ENOMEM after a prefix */
#endif
    :: k > ehi * PPE + PPE - 1 || !ok -> break
    od;
#if FLAG_FIRST
    k = elo; do :: k <= ehi -> wflag[m * NE + k] = 1; k++ :: else -> break od;
#else
    if
    :: ok -> k = elo; do :: k <= ehi -> wflag[m * NE + k] = 1; k++ :: else -> break od
    :: else
    fi;
#endif
    k = 0 }
}

/* coarsen_block() over entries [lo, hi] (also the whole-mapping last resort;
 * mapping.prepareWrite() runs the same steps over its range). Entered holding
 * no lock: entry_lock() [lo, hi] ascending, entry_set_dirty() each, mprotect
 * the range RW in this mapping and set the flags, entry_unlock() all
 * (descending). ok = 0 if the mprotect failed. `last`: the last resort,
 * assumed to succeed (making a whole mapping RW merges its VMAs). The DIRTY
 * stores are folded into the mprotect step (they commute with the only
 * lock-free readers, the tagging loads). */
inline lock_dirty_rw_range(m, last) {
  i = lo;
  do :: i <= hi -> entry_lock(i); i++ :: else -> break od;
  atomic {
    i = lo;
    do
    :: i <= hi ->
       if :: (ent[i] & DIRTY) == 0 -> todo = todo | (1 << i) :: else fi;   /* newly dirty */
       ent[i] = ent[i] | DIRTY; i++
    :: else -> break
    od;
#if SUMMARY == 1
    summary = 1;
#elif SUMMARY == 2
    i = lo; do :: i <= hi -> if :: todo & (1 << i) -> summary++ :: else fi; i++ :: else -> break od;
#endif
    todo = 0;
    if
    :: last -> ok = 1; k = lo * PPE;
       do :: k <= hi * PPE + PPE - 1 -> prot[m * NP + k] = 1; k++ :: else -> break od;
       k = lo; do :: k <= hi -> wflag[m * NE + k] = 1; k++ :: else -> break od; k = 0
    :: else
    fi }
  if :: !last -> region_set_rw(m, lo, hi) :: else fi;
  i = hi + 1;
  do :: i > lo -> i--; entry_unlock(i) :: else -> break od;
  i = 0
}

/* handle_write_fault(): SIGSEGV/SEGV_ACCERR on page p of mapping m; e = ENT(p)
 * and near ("near the VMA budget") were set with the faulting store. */
inline handle_write_fault(m, p) {
  if :: near -> goto coarsen :: else fi;             /* coarsen_block() first  */
#if BUG2016
  /* 2016: dax_pfn_mkwrite() locks, tags DIRTY and unlocks; generic code then
   * makes the PTE writable, outside the lock. */
  lock_dirty(e);
  entry_unlock(e);
  region_set_rw(m, e, e);
  if :: ok :: else -> goto coarsen fi;
#else
  lock_dirty(e);                                     /* entry_lock(i);         */
                                                     /* entry_set_dirty(i)     */
  region_set_rw(m, e, e);                            /* make_writable(), flag  */
  entry_unlock(e);                                   /* entry_unlock(i)        */
  if :: ok :: else -> goto coarsen fi;               /* ENOMEM: lock dropped;  */
#endif                                               /* coarsen_block()        */
  goto fault_done;
coarsen:
  atomic { lo = (e / BLK) * BLK; hi = lo + BLK - 1; if :: hi >= NE -> hi = NE - 1 :: else fi };
#if BLK < NE
  lock_dirty_rw_range(m, 0);                         /* coarsen_block()        */
  if
  :: ok
  :: else ->
     atomic { lo = 0; hi = NE - 1 };                 /* last resort: mapping   */
     lock_dirty_rw_range(m, 1)
  fi;
#else
  lock_dirty_rw_range(m, 1);     /* the block is the whole mapping: last resort */
#endif
fault_done:
  skip
}

/* The store itself (ghost bookkeeping only). */
inline ghost_store(p) {
  if
  :: tstate == T_NONE -> tpage = p; tstate = T_INCACHE     /* track this one */
  :: true
  fi
}

/* BIND=1: writer tid stores through mapping tid-1 only (one thread per
 * process); BIND=0: any writer through any mapping. */
#ifndef BIND
#define BIND 1
#endif
#if BIND
#define PICK_MAPPING m = tid - 1
#else
#define PICK_MAPPING if :: m = 0 :: m = 1 fi
#endif
#if VMA
#define PICK_NEAR if :: near = 1 :: near = 0 fi
#else
#define PICK_NEAR near = 0
#endif

/* A writer thread: plain stores to any page through its mapping (BIND=1) or
 * any mapping (BIND=0), forever. A store to a read-only page raises SIGSEGV
 * and the handler runs; the thread then goes on storing (its next store may
 * or may not be the same one: a superset of "the store retries"). Writers
 * never stop (EXITS=0), so a deadlock shows as an invalid end state only
 * once every thread is stuck; a sync stuck while writers run fails (4). */
proctype writer(byte tid) {
  byte m, p, e, i, k, lo, hi, seen, todo;
  bit ok, near, old;
loop:
  do
  :: atomic {
       PICK_MAPPING; PICK_PAGE;
       if
       :: prot[m * NP + p] -> ghost_store(p); m = 0; p = 0     /* the store   */
       :: else -> e = ENT(p); PICK_NEAR; goto fault             /* SIGSEGV     */
       fi }
#if EXITS
  :: break                                                      /* exits       */
#endif
  od;
  goto exit;
fault:
  handle_write_fault(m, p);
  atomic { e = 0; ok = 0; lo = 0; hi = 0; near = 0; m = 0; p = 0; goto loop };
exit:
  skip
}

/* ASYNC: a writer thread of a userfaultfd WP_ASYNC mapping. A store to a
 * page that is not write-protected completes; a store to a write-protected
 * one is resolved by the kernel itself (no signal, no udax code, no entry
 * lock): the PTE loses its uffd-wp bit, i.e. the page is now written and
 * writable, and the store retries. The writer then goes on with any store
 * (a superset of "the store retries"; a scan may write-protect the page
 * again in between, and the retried store faults again). */
proctype async_writer(byte tid) {
  byte m, p;
  do
  :: atomic {
       PICK_MAPPING; PICK_PAGE;
       if
       :: prot[m * NP + p] -> ghost_store(p)                   /* the store   */
       :: else -> prot[m * NP + p] = 1                         /* WP_ASYNC    */
       fi; m = 0; p = 0 }
  od
}

/* ASYNC: native/uffd.cc Harvest() over the whole file, the first step of
 * every sync (src/file.ts #writeback -> AsyncTracker.harvest). Under the
 * file's harvest lock (harvest_lock(): with FUTEX=1 the futex mutex of
 * native/uffd.cc, with FUTEX=0 an abstract blocking mutex),
 * for each live async mapping in turn (harvest_region()): scan_written()
 * runs PAGEMAP_SCAN get-and-write-protect over the range, which reports
 * each written page and write-protects it, atomically per page (per page
 * table in the kernel: one step per page is a superset); then on_written()
 * -> dirty_file_range() DIRTies each entry holding a reported page with
 * entry_dirty_nowait(): never waiting for an entry lock (the harvest lock is
 * innermost), an unlocked entry is locked, made DIRTY and unlocked; a locked
 * one gets DIRTY|REDIRTY in one CAS, and its owner's clean keeps DIRTY.
 * Then the summary. Between a page's scan and its entry's DIRTY the dirt
 * lives only in the harvester's result (todo here): TRACKERS.md trap 6. */
#if HLOCK && FUTEX
/* harvest_lock(): the word holds the holder's owner tag (1 here), with a
 * WAITERS bit (2 here: held with waiters). CAS 0 -> tag; else set WAITERS
 * by CAS and futex_wait(word, tag|WAITERS) (EAGAIN if it changed), then
 * again from the top. (The 20 ms timeout and a dead holder's takeover are
 * not modelled: without them a lost wake-up shows as a hang, (4).) */
inline harvest_lock() {
  do
  :: atomic { hlock == 0 -> hlock = 1 }; break                  /* CAS 0 -> tag */
  :: atomic { hlock == 1 -> hlock = 2 }                         /* CAS c -> c|WAITERS */
  :: atomic { hlock == 2 -> sleeping[tid] = HSLEEP };           /* FUTEX_WAIT on c|WAITERS */
     sleeping[tid] == 0
  od
}
/* harvest_unlock(): exchange 0; if WAITERS was set, FUTEX_WAKE every sleeper. */
inline harvest_unlock() {
  atomic { seen = hlock; hlock = 0 };
  if
#if HLOCK_NO_WAKE
  :: seen == 2 -> seen = 0                                   /* mutant: no wake */
#else
  :: seen == 2 ->
     atomic {
        if :: sleeping[3] == HSLEEP -> sleeping[3] = 0 :: else fi;
        if :: sleeping[4] == HSLEEP -> sleeping[4] = 0 :: else fi;
        seen = 0 }
#endif
  :: else
  fi
}
#elif HLOCK
inline harvest_lock() { atomic { hlock == 0 -> hlock = 1 } }
inline harvest_unlock() { hlock = 0 }
#endif

/* entry_dirty_nowait(e): as lock_dirty() + entry_unlock() when the entry is
 * unlocked (a CAS, never a wait); else DIRTY|REDIRTY by CAS on the locked
 * word. The summary counts a clean -> DIRTY transition either way. */
inline dirty_nowait(e) {
  if
  :: atomic { (ent[e] & LOCKED) == 0 ->
#if FUTEX
       ent[e] = ent[e] | LOCKED | (tid << OWNER_SHIFT);
#else
       ent[e] = ent[e] | LOCKED;
#endif
       if :: (ent[e] & DIRTY) == 0 -> old = 1 :: else fi; ent[e] = ent[e] | DIRTY }
#if SUMMARY == 1
     atomic { summary = 1; old = 0 };
#elif SUMMARY == 2
     atomic { if :: old -> summary++ :: else fi; old = 0 };
#else
     old = 0;
#endif
     entry_unlock(e)
  :: atomic { (ent[e] & LOCKED) != 0 ->
       if :: (ent[e] & DIRTY) == 0 -> old = 1 :: else fi; ent[e] = ent[e] | DIRTY | REDIRTY }
#if SUMMARY == 1
     atomic { summary = 1; old = 0 }
#elif SUMMARY == 2
     atomic { if :: old -> summary++ :: else fi; old = 0 }
#else
     old = 0
#endif
  fi
}

inline harvest() {
#if HLOCK
  harvest_lock();                                      /* harvest_lock()       */
#endif
  m = 0;
  do
  :: m < NM ->
     k = 0;                                            /* scan_written()       */
     do
     :: k < NP ->
        atomic { if :: prot[m * NP + k] -> prot[m * NP + k] = 0; todo = todo | (1 << ENT(k))
                    :: else fi; k++ }
     :: else -> break
     od;
     e = 0;                                            /* dirty_file_range()   */
     do
     :: e < NE && (todo & (1 << e)) ->
        dirty_nowait(e);                               /* entry_dirty_nowait() */
        e++
     :: e < NE && !(todo & (1 << e)) -> e++
     :: else -> break
     od;
     atomic { todo = 0; k = 0; e = 0; m++ }
  :: else -> break
  od;
#if HLOCK
  m = 0;
  harvest_unlock()                                     /* harvest_unlock()     */
#else
  m = 0
#endif
}

/* ======================================================================== */
/* Writeback: src/writeback.ts, sync(range) with range = the whole file.     */
/* ======================================================================== */

/* flushEntries() + sfence: clwb every line of every entry in todo, then this
 * thread's clwb's are durable at its sfence. */
inline clwb_todo() {
  if
  :: tstate == T_INCACHE && (todo & (1 << ENT(tpage))) -> tstate = T_INFLIGHT; tflusher = s
  :: else
  fi
}
inline sfence() {
  if
  :: tstate == T_INFLIGHT && tflusher == s ->
     tstate = T_NONE; tpage = 0; tflusher = 0; tobl[0] = 0; tobl[1] = 0
  :: else
  fi
}

/* writebackRun() over the run [lo, hi] of the to-write list. Between its
 * entry_lock()s and its first clearDirty() the run is one atomic step: the
 * run's pages can change only under their locks (held) and the tagging loads
 * do not read prot/wflag, so other threads' actions commute with it, except a
 * store to a run page still RW in some mapping after mkclean (a protocol
 * bug): such a store lands before or after the step in the model, and one
 * landing after it is not flushed, so no lost store is hidden. */
inline writeback_run() {
  i = lo;                                              /* lockEntries(): asc.  */
  do :: i <= hi -> entry_lock(i); i++ :: else -> break od;
  atomic {
    i = lo;
    do                                                 /* TOWRITE still set?   */
    :: i <= hi ->                                      /* (else skip: another  */
       if                                              /* sync did it)         */
       :: (ent[i] & TOWRITE) ->
          todo = todo | (1 << i);
          m = 0;                                       /* mkcleanEntries():    */
          do                                           /* every shared mapping */
          :: m < NM ->                                 /* with the flag set:   */
             if                                        /* mprotect RO, clear   */
             :: wflag[m * NE + i] ->                   /* the flag             */
                k = i * PPE;
                do :: k < i * PPE + PPE -> prot[m * NP + k] = 0; k++ :: else -> break od;
                k = 0; wflag[m * NE + i] = 0
             :: else
             fi; m++
          :: else -> break
          od; m = 0
       :: else
       fi; i++
    :: else -> break
    od;
    clwb_todo();                                       /* flushEntries()       */
#if !FENCE_LATE
    sfence();                                          /* one sfence           */
#endif
    i = lo };
  do                                                   /* clearDirty()         */
  :: i <= hi ->
#if REDIRTY_IGNORED
#define KEEPS_REDIRTY 0        /* mutant: clearDirty clears a harvest's DIRTY */
#else
#define KEEPS_REDIRTY (ent[i] & REDIRTY)
#endif
#if SUMMARY == 2
     atomic { if :: (todo & (1 << i)) && (ent[i] & DIRTY) && !KEEPS_REDIRTY -> old = 1 :: else fi;
              if :: (todo & (1 << i)) && !KEEPS_REDIRTY -> ent[i] = ent[i] & ~(DIRTY | TOWRITE) :: else fi };
     atomic { if :: old -> summary--; old = 0 :: else fi; i++ }
#else
     atomic { if :: (todo & (1 << i)) && !KEEPS_REDIRTY -> ent[i] = ent[i] & ~(DIRTY | TOWRITE) :: else fi; i++ }
#endif
  :: else -> break
  od;
#if FENCE_LATE
  atomic { sfence() };
#endif
  i = hi + 1;                                          /* unlockEntries()      */
  do :: i > lo -> i--; entry_unlock(i) :: else -> break od
}

proctype syncer(byte tid; byte s) {
  byte i, k, m, e, lo, hi, list, todo, seen;   /* todo: also the harvest's found entries */
  bit old;
  /* sync() begins (ASYNC: it harvests first). tagPagesForWriteback(): every DIRTY entry gets TOWRITE
   * (fetch_or) and joins the list. With a summary, the group is first
   * checked (and, SUMMARY=1, its bit cleared) and skipped if clean. */
#if ASYNC
  atomic { tobl[s] = (tstate != T_NONE) };
#if !HARVEST_LATE
  harvest();                                          /* before it tags      */
#endif
#if SUMMARY == 0
  e = 0;
#endif
#elif SUMMARY == 0
  atomic { tobl[s] = (tstate != T_NONE); e = 0 };
#endif
#if SUMMARY == 1
#if !ASYNC
  atomic { tobl[s] = (tstate != T_NONE) };
#endif
again:
  atomic { if :: summary -> summary = 0; e = 0 :: else -> e = NE fi };
#elif SUMMARY == 2
#if !ASYNC
  atomic { tobl[s] = (tstate != T_NONE) };
#endif
again:
  atomic { if :: summary != 0 -> e = 0 :: else -> e = NE fi };
#endif
#if NO_SNAPSHOT && SUMMARY == 0
again:
#endif
  do
  :: e < NE ->
     atomic { if :: (ent[e] & DIRTY) -> ent[e] = ent[e] | TOWRITE; list = list | (1 << e)
                 :: else fi; e++ }
  :: else -> break
  od;
#if SUMMARY == 1
  atomic { if :: list != 0 -> summary = 1 :: else fi };  /* group not clean */
#endif
#if ASYNC && HARVEST_LATE
  harvest();                                          /* mutant: after tagging */
#endif
  /* each contiguous run of the list -> writebackRun() */
  e = 0;
  do
  :: e < NE && (list & (1 << e)) ->
     atomic { lo = e; do :: e < NE && (list & (1 << e)) -> e++ :: else -> break od; hi = e - 1 };
     writeback_run();
     atomic { i = 0; lo = 0; hi = 0; todo = 0 }
  :: e < NE && !(list & (1 << e)) -> e++
  :: else -> break
  od;
#if NO_SNAPSHOT
  if :: list != 0 -> atomic { list = 0; e = 0 }; goto again :: else fi;
#endif
  atomic {                                            /* sync() returns: (2) */
#if CHECK == 0 || CHECK == 2
    assert(tobl[s] == 0);
#endif
    list = 0; e = 0; syncs_done++ }
}

init {
  atomic {
#if ASYNC
    run async_writer(1);
    run async_writer(2);
#else
    run writer(1);
    run writer(2);
#endif
    run syncer(3, 0);
    run syncer(4, 1)
  }
}

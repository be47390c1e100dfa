// Messages to stderr from the signal handler: async-signal-safe (write(2)
// only: no stdio, no malloc, no locks).
#include "udax.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void msg_str(const char *s) { (void)!write(2, s, strlen(s)); }

void msg_dec(uint64_t v) {
  char buf[24];
  size_t n = sizeof buf;
  do { buf[--n] = (char)('0' + v % 10); v /= 10; } while (v);
  (void)!write(2, buf + n, sizeof buf - n);
}

void msg_hex(uint64_t v) {
  char buf[18];
  size_t n = sizeof buf;
  do { buf[--n] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
  buf[--n] = 'x';
  buf[--n] = '0';
  (void)!write(2, buf + n, sizeof buf - n);
}

[[noreturn]] void msg_abort() {
  signal(SIGABRT, SIG_DFL);
  abort();
}

// A tiny static probe run inside containers by test/e2e/security.test.ts: calls one syscall
// directly (no libc fallbacks in the way) and prints "NAME ERRNO" (0 when it succeeded), or the
// effective uid for "euid" (installed setuid-root to test no-new-privileges).
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* what = argv[1];
  long r = 0;
  if (strcmp(what, "euid") == 0) {
    printf("%d\n", (int)geteuid());
    return 0;
  } else if (strcmp(what, "keyctl") == 0) {
    r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session keyring */, 1);
  } else if (strcmp(what, "clone3") == 0) {
    r = syscall(SYS_clone3, NULL, 0);
  } else if (strcmp(what, "mount") == 0 && argc > 2) {
    r = mount("none", argv[2], "tmpfs", 0, "");
  } else {
    return 2;
  }
  printf("%s %d\n", what, r < 0 ? errno : 0);
  return 0;
}

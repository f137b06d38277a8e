/* ProcessPrng for Wine 8, which lacks it; Rust's std (1.78+) imports it on
   Windows. Built into the Wine prefix by run.sh, never shipped. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size) {
  return BCryptGenRandom(NULL, data, (ULONG)size, BCRYPT_USE_SYSTEM_PREFERRED_RNG) == 0;
}

/* Test-only stand-in for bcryptprimitives.dll, which Wine 8.0 (Debian 12) does not ship.
 * Rust's std imports ProcessPrng from it on Windows; without the DLL the loader fails with
 * STATUS_DLL_NOT_FOUND (exit code 53) before main. This forwards to RtlGenRandom
 * (advapi32!SystemFunction036), which Wine has. Placed beside echoload.exe by
 * scripts/wine-test.sh only; never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG len);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}

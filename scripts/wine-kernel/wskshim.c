/*
 * Test-only stand-in for what Wine 8.0's ntoskrnl.exe lacks, so that scripts/wine-kernel-test.sh
 * can load the shipped wskecho.sys under Wine's own kernel (winedevice.exe, ntoskrnl.exe,
 * netio.sys). Never shipped: real Windows has all of it.
 *
 * The test copies the image and renames its "ntoskrnl.exe" import to "wskshim.dll"; this DLL
 * exports every function the image imports from ntoskrnl.exe, as a forwarder to Wine's
 * ntoskrnl.exe (the .def file is generated from the image's import list), except the ones
 * below, which Wine does not implement:
 *   - ExAllocatePool2: not exported by Wine 8.0.
 *   - ExInitializeRundownProtection, ExAcquireRundownProtection, ExReleaseRundownProtection,
 *     ExWaitForRundownProtectionRelease: exported as "@ stub", which raises when called.
 *   - SeExports: exported as a stub function, not the PSE_EXPORTS variable the image reads.
 * If the image stops importing one of these (run-time lookup instead), the export stays here
 * unused. docs/wine.md lists what this means for what the test can show.
 *
 * Built with: x86_64-w64-mingw32-gcc -shared -nostdlib wskshim.c wskshim.def -lntoskrnl
 */
#include <stddef.h>
#include <stdint.h>

typedef long NTSTATUS;
typedef struct { uint32_t LowPart; int32_t HighPart; } LUID;
typedef void *PSID;

/* ntoskrnl.exe imports of the shim itself. */
__declspec(dllimport) void *ExAllocatePoolWithTag(int pool_type, size_t size, uint32_t tag);
__declspec(dllimport) NTSTATUS KeDelayExecutionThread(char mode, unsigned char alertable,
                                                      int64_t *interval);

/* --- ExAllocatePool2 -------------------------------------------------------------------- */
#define POOL_FLAG_UNINITIALIZED 0x2ULL
#define POOL_FLAG_PAGED 0x100ULL
#define PAGED_POOL 1
#define NON_PAGED_POOL_NX 512

/* Zeroed unless POOL_FLAG_UNINITIALIZED, as documented; POOL_FLAG_RAISE_ON_FAILURE is not
 * honoured (NULL is returned), which the image never asks for. */
void *ExAllocatePool2(uint64_t flags, size_t size, uint32_t tag)
{
    void *p = ExAllocatePoolWithTag((flags & POOL_FLAG_PAGED) ? PAGED_POOL : NON_PAGED_POOL_NX,
                                    size, tag);
    if (p && !(flags & POOL_FLAG_UNINITIALIZED)) {
        volatile unsigned char *b = p;
        for (size_t i = 0; i < size; i++) b[i] = 0;
    }
    return p;
}

/* --- Rundown protection ----------------------------------------------------------------- */
/* EX_RUNDOWN_REF is one pointer-sized word: bit 0 = rundown started, the rest counts
 * references in steps of 2 (Windows' own encoding; the image only initializes it). */
typedef struct { volatile uintptr_t Count; } EX_RUNDOWN_REF;

void ExInitializeRundownProtection(EX_RUNDOWN_REF *r)
{
    __atomic_store_n(&r->Count, 0, __ATOMIC_SEQ_CST);
}

unsigned char ExAcquireRundownProtection(EX_RUNDOWN_REF *r)
{
    uintptr_t v = __atomic_load_n(&r->Count, __ATOMIC_SEQ_CST);
    for (;;) {
        if (v & 1) return 0;
        if (__atomic_compare_exchange_n(&r->Count, &v, v + 2, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST))
            return 1;
    }
}

void ExReleaseRundownProtection(EX_RUNDOWN_REF *r)
{
    __atomic_fetch_sub(&r->Count, 2, __ATOMIC_SEQ_CST);
}

/* Windows sleeps on an event the last release sets; polling every millisecond is enough for
 * a test, and waits exactly as long (unbounded, like the kernel's). PASSIVE_LEVEL. */
void ExWaitForRundownProtectionRelease(EX_RUNDOWN_REF *r)
{
    int64_t one_ms = -10000; /* relative, 100 ns units */
    __atomic_fetch_or(&r->Count, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&r->Count, __ATOMIC_SEQ_CST) != 1)
        KeDelayExecutionThread(0 /* KernelMode */, 0, &one_ms);
}

/* --- SeExports -------------------------------------------------------------------------- */
/* SE_EXPORTS as in the WDK's ntifs.h: 23 privilege LUIDs, then the well-known SIDs. Only the
 * two the image reads are filled (LocalSystem S-1-5-18 and Administrators S-1-5-32-544); the
 * rest stay NULL, which a driver reading them would notice at once. */
typedef struct {
    LUID privileges[23];
    PSID SeNullSid, SeWorldSid, SeLocalSid, SeCreatorOwnerSid, SeCreatorGroupSid,
        SeNtAuthoritySid, SeDialupSid, SeNetworkSid, SeBatchSid, SeInteractiveSid,
        SeLocalSystemSid, SeAliasAdminsSid;
    PSID rest[64];
} SE_EXPORTS;

/* SID: revision 1, sub-authority count, authority {0,0,0,0,0,5} (NT), sub-authorities. */
static const unsigned char local_system_sid[12] = {1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0};
static const unsigned char admins_sid[16] = {1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 2, 0, 0};

static SE_EXPORTS se_exports = {
    .SeLocalSystemSid = (PSID)local_system_sid,
    .SeAliasAdminsSid = (PSID)admins_sid,
};
SE_EXPORTS *SeExports = &se_exports;

/* No C runtime: the loader's entry point has nothing to do. */
int __stdcall DllMainCRTStartup(void *module, unsigned long reason, void *reserved)
{
    (void)module; (void)reason; (void)reserved;
    return 1;
}

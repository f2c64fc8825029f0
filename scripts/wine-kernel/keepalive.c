/* Test-only: a user process that sleeps. Wine ends its system processes (services.exe and the
 * winedevice.exe hosting a kernel service) once no user process is left; this keeps the
 * service alive between the test's separate `wine` commands. Ends after the given seconds. */
#include <windows.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    Sleep((argc > 1 ? atoi(argv[1]) : 300) * 1000);
    return 0;
}

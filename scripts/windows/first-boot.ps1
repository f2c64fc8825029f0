<#
.SYNOPSIS
    First boot of wskecho on a Windows test machine: Driver Verifier on, install, start,
    `echoload.exe driver selftest`, stop, and one report to paste into a bug report.

.DESCRIPTION
    Run elevated, from a folder holding the signed package (wskecho.sys, wskecho.inf,
    wskecho.cat; README "Windows", steps 1 to 3) and echoload.exe. The checks themselves are
    echoload's (`driver selftest`, tested in CI against wskecho-sim and under Wine's kernel);
    this script only orders the Windows tools around it.

    1. Test signing must be on (bcdedit), else it stops and says how.
    2. Driver Verifier for wskecho.sys: standard flags (0x209BB: special pool, IRQL checking,
       pool tracking, I/O verification, deadlock detection, DMA, security checks, misc., DDI
       compliance...). Verifier settings take effect at boot: the first run sets them and asks
       for a reboot; run the script again afterwards. -NoVerifier skips this.
    3. pnputil /add-driver wskecho.inf /install, then sc start wskecho (must be RUNNING).
    4. echoload.exe driver selftest (its verdict and exit code: 0 PASS, 1 FAIL, 3 INCOMPLETE).
    5. sc stop wskecho: STOPPED within 30 s.
    6. verifier /query: the counters Driver Verifier kept for wskecho.sys.
    Everything goes to the report file (default .\wskecho-first-boot.txt); the exit code is the
    self-test's, or 1 if a Windows step failed.

.EXAMPLE
    powershell -ExecutionPolicy Bypass -File .\first-boot.ps1
#>
[CmdletBinding()]
param(
    [string]$Package = $PSScriptRoot,
    [string]$Echoload = (Join-Path $PSScriptRoot 'echoload.exe'),
    [string]$Report = (Join-Path (Get-Location) 'wskecho-first-boot.txt'),
    [switch]$NoVerifier
)
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# Standard Driver Verifier flags (verifier /standard on Windows 10 and later); among them
# 0x2 IRQL checking, 0x8 pool tracking, 0x20 deadlock detection.
$VerifierFlags = '0x209BB'

# To the console and the report; Write-Host, not Write-Output, so that a function's return
# value stays its own (PowerShell returns everything written to the output stream).
function Write-Report([string]$Text) {
    Write-Host $Text
    Add-Content -Path $Report -Value $Text
}

function Invoke-Tool([string]$Title, [string]$Exe, [string[]]$Arguments) {
    Write-Report "== $Title ($Exe $($Arguments -join ' '))"
    $out = & $Exe @Arguments 2>&1 | Out-String
    $code = $LASTEXITCODE
    Write-Report $out.TrimEnd()
    Write-Report "(exit $code)"
    return $code
}

function Get-ServiceState {
    $q = & sc.exe query wskecho 2>&1 | Out-String
    if ($q -match 'STATE\s+:\s+\d+\s+(\w+)') { return $Matches[1] }
    return 'ABSENT'
}

function Wait-ServiceState([string]$Want, [int]$Seconds) {
    $deadline = (Get-Date).AddSeconds($Seconds)
    do {
        $s = Get-ServiceState
        if ($s -eq $Want) { return $true }
        Start-Sleep -Milliseconds 250
    } while ((Get-Date) -lt $deadline)
    return $false
}

Set-Content -Path $Report -Value "wskecho first boot, $(Get-Date -Format o)"

$admin = ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole(
    [Security.Principal.WindowsBuiltInRole]::Administrator)
if (-not $admin) { Write-Report 'Run this from an elevated PowerShell.'; exit 1 }
foreach ($f in @((Join-Path $Package 'wskecho.inf'), (Join-Path $Package 'wskecho.sys'), $Echoload)) {
    if (-not (Test-Path $f)) { Write-Report "Missing: $f"; exit 1 }
}
Write-Report "Windows: $([Environment]::OSVersion.VersionString)"

# 1. Test signing.
$bcd = & bcdedit.exe /enum '{current}' | Out-String
if ($bcd -notmatch 'testsigning\s+Yes') {
    Write-Report 'Test signing is off: run "bcdedit /set testsigning on" (Secure Boot off), reboot, run again.'
    exit 1
}
Write-Report 'Test signing: on'

# 2. Driver Verifier (takes effect at the next boot).
if (-not $NoVerifier) {
    $settings = & verifier.exe /querysettings | Out-String
    if ($settings -notmatch 'wskecho\.sys') {
        Invoke-Tool 'Driver Verifier on for wskecho.sys' 'verifier.exe' @('/flags', $VerifierFlags, '/driver', 'wskecho.sys') | Out-Null
        Write-Report 'Driver Verifier is set for wskecho.sys from the next boot: reboot (shutdown /r /t 0), then run this script again.'
        exit 0
    }
    Write-Report "Driver Verifier: active for wskecho.sys (flags $VerifierFlags)"
}

# 3. Install and start.
$failed = $false
if ((Invoke-Tool 'Install' 'pnputil.exe' @('/add-driver', (Join-Path $Package 'wskecho.inf'), '/install')) -ne 0) {
    $failed = $true
}
Invoke-Tool 'Start' 'sc.exe' @('start', 'wskecho') | Out-Null
if (-not (Wait-ServiceState 'RUNNING' 10)) {
    Write-Report "wskecho is not RUNNING (state $(Get-ServiceState)); see the System event log."
    exit 1
}

# 4. The self-test (echoload's logic; its verdict is the report's core).
$selftest = Invoke-Tool 'Self-test' $Echoload @('driver', 'selftest')

# 5. Stop.
$t0 = Get-Date
Invoke-Tool 'Stop' 'sc.exe' @('stop', 'wskecho') | Out-Null
if (Wait-ServiceState 'STOPPED' 30) {
    Write-Report ("Stopped in {0:N1} s" -f ((Get-Date) - $t0).TotalSeconds)
} else {
    Write-Report "wskecho did not stop within 30 s (state $(Get-ServiceState))"
    $failed = $true
}

# 6. What Driver Verifier saw.
if (-not $NoVerifier) { Invoke-Tool 'Driver Verifier counters' 'verifier.exe' @('/query') | Out-Null }

Write-Report "Report: $Report"
if ($failed -and $selftest -eq 0) { exit 1 }
exit $selftest

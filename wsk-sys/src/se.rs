//! Security descriptor pieces (winnt.h / ntifs.h) for an admin-only control device.

use crate::ntdef::{ACCESS_MASK, LUID, PVOID, UCHAR, ULONG, USHORT};

/// `SID_IDENTIFIER_AUTHORITY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SID_IDENTIFIER_AUTHORITY {
    pub Value: [UCHAR; 6],
}

/// `SID`: <https://learn.microsoft.com/windows/win32/api/winnt/ns-winnt-sid>
/// `SubAuthority` is a variable-length tail (`ULONG SubAuthority[ANYSIZE_ARRAY]`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SID {
    pub Revision: UCHAR,
    pub SubAuthorityCount: UCHAR,
    pub IdentifierAuthority: SID_IDENTIFIER_AUTHORITY,
    pub SubAuthority: [ULONG; 1],
}
pub type PSID = PVOID;

/// `ACL` header: <https://learn.microsoft.com/windows/win32/api/winnt/ns-winnt-acl>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ACL {
    pub AclRevision: UCHAR,
    pub Sbz1: UCHAR,
    pub AclSize: USHORT,
    pub AceCount: USHORT,
    pub Sbz2: USHORT,
}
pub type PACL = *mut ACL;

/// `ACE_HEADER`: <https://learn.microsoft.com/windows/win32/api/winnt/ns-winnt-ace_header>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ACE_HEADER {
    pub AceType: UCHAR,
    pub AceFlags: UCHAR,
    pub AceSize: USHORT,
}

/// `ACCESS_ALLOWED_ACE`: <https://learn.microsoft.com/windows/win32/api/winnt/ns-winnt-access_allowed_ace>
/// The SID starts at `SidStart` and runs on past the struct.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ACCESS_ALLOWED_ACE {
    pub Header: ACE_HEADER,
    pub Mask: ACCESS_MASK,
    pub SidStart: ULONG,
}

/// `SECURITY_DESCRIPTOR_CONTROL`.
pub type SECURITY_DESCRIPTOR_CONTROL = USHORT;

/// `SECURITY_DESCRIPTOR` (absolute form, x64: 40 bytes):
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/ntifs/ns-ntifs-_security_descriptor>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SECURITY_DESCRIPTOR {
    pub Revision: UCHAR,
    pub Sbz1: UCHAR,
    pub Control: SECURITY_DESCRIPTOR_CONTROL,
    pub Owner: PSID,
    pub Group: PSID,
    pub Sacl: PACL,
    pub Dacl: PACL,
}
pub type PSECURITY_DESCRIPTOR = PVOID;

pub const SECURITY_DESCRIPTOR_REVISION: ULONG = 1;

// Well-known SIDs (winnt.h), built by hand: S-1-5-18 (LocalSystem) is
// {SID_REVISION, 1, SECURITY_NT_AUTHORITY, {SECURITY_LOCAL_SYSTEM_RID}} and S-1-5-32-544
// (Administrators) is {SID_REVISION, 2, SECURITY_NT_AUTHORITY, {SECURITY_BUILTIN_DOMAIN_RID,
// DOMAIN_ALIAS_RID_ADMINS}}: <https://learn.microsoft.com/windows/win32/secauthz/well-known-sids>
pub const SID_REVISION: UCHAR = 1;
pub const SECURITY_NT_AUTHORITY: SID_IDENTIFIER_AUTHORITY = SID_IDENTIFIER_AUTHORITY {
    Value: [0, 0, 0, 0, 0, 5],
};
pub const SECURITY_LOCAL_SYSTEM_RID: ULONG = 18;
pub const SECURITY_BUILTIN_DOMAIN_RID: ULONG = 32;
pub const DOMAIN_ALIAS_RID_ADMINS: ULONG = 544;
pub const SECURITY_DESCRIPTOR_MIN_LENGTH: usize = core::mem::size_of::<SECURITY_DESCRIPTOR>();
pub const ACL_REVISION: ULONG = 2;
pub const ACCESS_ALLOWED_ACE_TYPE: UCHAR = 0;
pub const OWNER_SECURITY_INFORMATION: ULONG = 0x0000_0001;
pub const GROUP_SECURITY_INFORMATION: ULONG = 0x0000_0002;
pub const DACL_SECURITY_INFORMATION: ULONG = 0x0000_0004;
pub const SACL_SECURITY_INFORMATION: ULONG = 0x0000_0008;

/// `SE_EXPORTS` (ntddk.h): the kernel's well-known SIDs and privilege LUIDs, reached
/// through the exported `SeExports` pointer. The driver does not import it (it builds its two
/// SIDs itself); wsk-sim provides the variable for its own checks.
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/ntddk/ns-ntddk-_se_exports>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SE_EXPORTS {
    pub SeCreateTokenPrivilege: LUID,
    pub SeAssignPrimaryTokenPrivilege: LUID,
    pub SeLockMemoryPrivilege: LUID,
    pub SeIncreaseQuotaPrivilege: LUID,
    pub SeUnsolicitedInputPrivilege: LUID,
    pub SeTcbPrivilege: LUID,
    pub SeSecurityPrivilege: LUID,
    pub SeTakeOwnershipPrivilege: LUID,
    pub SeLoadDriverPrivilege: LUID,
    pub SeCreatePagefilePrivilege: LUID,
    pub SeIncreaseBasePriorityPrivilege: LUID,
    pub SeSystemProfilePrivilege: LUID,
    pub SeSystemtimePrivilege: LUID,
    pub SeProfileSingleProcessPrivilege: LUID,
    pub SeCreatePermanentPrivilege: LUID,
    pub SeBackupPrivilege: LUID,
    pub SeRestorePrivilege: LUID,
    pub SeShutdownPrivilege: LUID,
    pub SeDebugPrivilege: LUID,
    pub SeAuditPrivilege: LUID,
    pub SeSystemEnvironmentPrivilege: LUID,
    pub SeChangeNotifyPrivilege: LUID,
    pub SeRemoteShutdownPrivilege: LUID,
    pub SeNullSid: PSID,
    pub SeWorldSid: PSID,
    pub SeLocalSid: PSID,
    pub SeCreatorOwnerSid: PSID,
    pub SeCreatorGroupSid: PSID,
    pub SeNtAuthoritySid: PSID,
    pub SeDialupSid: PSID,
    pub SeNetworkSid: PSID,
    pub SeBatchSid: PSID,
    pub SeInteractiveSid: PSID,
    pub SeLocalSystemSid: PSID,
    pub SeAliasAdminsSid: PSID,
    pub SeAliasUsersSid: PSID,
    pub SeAliasGuestsSid: PSID,
    pub SeAliasPowerUsersSid: PSID,
    pub SeAliasAccountOpsSid: PSID,
    pub SeAliasSystemOpsSid: PSID,
    pub SeAliasPrintOpsSid: PSID,
    pub SeAliasBackupOpsSid: PSID,
    pub SeAuthenticatedUsersSid: PSID,
    pub SeRestrictedSid: PSID,
    pub SeAnonymousLogonSid: PSID,
    pub SeUndockPrivilege: LUID,
    pub SeSyncAgentPrivilege: LUID,
    pub SeEnableDelegationPrivilege: LUID,
    pub SeLocalServiceSid: PSID,
    pub SeNetworkServiceSid: PSID,
    pub SeManageVolumePrivilege: LUID,
    pub SeImpersonatePrivilege: LUID,
    pub SeCreateGlobalPrivilege: LUID,
    pub SeTrustedCredManAccessPrivilege: LUID,
    pub SeRelabelPrivilege: LUID,
    pub SeIncreaseWorkingSetPrivilege: LUID,
    pub SeTimeZonePrivilege: LUID,
    pub SeCreateSymbolicLinkPrivilege: LUID,
    pub SeIUserSid: PSID,
    pub SeUntrustedMandatorySid: PSID,
    pub SeLowMandatorySid: PSID,
    pub SeMediumMandatorySid: PSID,
    pub SeHighMandatorySid: PSID,
    pub SeSystemMandatorySid: PSID,
    pub SeOwnerRightsSid: PSID,
    pub SeAllAppPackagesSid: PSID,
    pub SeUserModeDriversSid: PSID,
    pub SeProcTrustWinTcbSid: PSID,
    pub SeTrustedInstallerSid: PSID,
    pub SeDelegateSessionUserImpersonatePrivilege: LUID,
    pub SeAppSiloSid: PSID,
    pub SeAppSiloVolumeRootMinimalCapabilitySid: PSID,
    pub SeAppSiloProfilesRootMinimalCapabilitySid: PSID,
}
pub type PSE_EXPORTS = *mut SE_EXPORTS;

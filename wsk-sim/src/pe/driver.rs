//! A loaded image driven like the I/O manager drives a driver: DriverEntry (from the
//! optional header's entry point) with a DRIVER_OBJECT and a registry path, IRPs through
//! `DriverObject->MajorFunction`, DriverUnload, then the image is unmapped.

use wsk_sys::{
    IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, NTSTATUS, NT_SUCCESS, PDEVICE_OBJECT,
    PDRIVER_INITIALIZE, PDRIVER_OBJECT, STATUS_DEVICE_NOT_READY, UNICODE_STRING,
};

use super::Image;
use crate::device::DispatchResult;

/// A driver image after its entry point ran (successfully or not).
#[derive(Debug)]
pub struct ImageDriver {
    image: Option<Image>,
    drv_obj: PDRIVER_OBJECT,
    entry_status: NTSTATUS,
    _path: Vec<u16>,
    _us: Box<UNICODE_STRING>,
    unloaded: bool,
}

// SAFETY: the driver object and strings are owned here and only handed to the image's
// routines; the image synchronises its own state.
unsafe impl Send for ImageDriver {}

/// The control device of a loaded image, for sending IRPs from any thread while the driver
/// is loaded (look it up again after an unload: the device is gone).
#[derive(Debug, Clone, Copy)]
pub struct DeviceHandle(usize);

impl ImageDriver {
    /// Calls the image's entry point as PASSIVE_LEVEL kernel code with a fresh DRIVER_OBJECT
    /// (DriverStart/DriverSize/DriverInit filled as the I/O manager does) and
    /// `registry_path` (e.g. `\Registry\Machine\System\CurrentControlSet\Services\NAME`,
    /// whose `Parameters` subkey the sim registry serves).
    pub fn start(image: Image, registry_path: &str) -> ImageDriver {
        let drv_obj = crate::new_driver_object();
        // SAFETY: the entry point of a loaded image is DRIVER_INITIALIZE (Microsoft x64).
        let entry: PDRIVER_INITIALIZE = unsafe { std::mem::transmute(image.entry_point()) };
        // SAFETY: a fresh driver object of ours.
        unsafe {
            (*drv_obj).DriverStart = image.base() as *mut _;
            (*drv_obj).DriverSize = image.size() as u32;
            (*drv_obj).DriverInit = entry;
        }
        let mut path: Vec<u16> = registry_path.encode_utf16().collect();
        let mut us = Box::new(UNICODE_STRING {
            Length: (path.len() * 2) as u16,
            MaximumLength: (path.len() * 2) as u16,
            Buffer: path.as_mut_ptr(),
        });
        let us_ptr: *mut UNICODE_STRING = &raw mut *us;
        let entry = entry.expect("entry point checked at load");
        image.set_entry_role(image.entry_point(), "DriverEntry");
        // SAFETY: DriverEntry with a valid driver object and registry path, both alive until
        // the driver is unloaded.
        let entry_status = crate::run_passive(|| unsafe { entry(drv_obj, us_ptr) });
        // SAFETY: our driver object, filled by DriverEntry.
        let (unload, majors) = unsafe { ((*drv_obj).DriverUnload, (*drv_obj).MajorFunction) };
        if let Some(u) = unload {
            image.set_entry_role(u as usize, "DriverUnload");
        }
        let mut dispatch: Vec<(usize, Vec<String>)> = Vec::new();
        for (major, f) in majors.iter().enumerate() {
            let Some(f) = f else { continue };
            let name = match major as u8 {
                IRP_MJ_CREATE => "CREATE".to_string(),
                IRP_MJ_CLOSE => "CLOSE".to_string(),
                IRP_MJ_DEVICE_CONTROL => "DEVICE_CONTROL".to_string(),
                m => format!("{m:#x}"),
            };
            match dispatch.iter_mut().find(|d| d.0 == *f as usize) {
                Some(d) => d.1.push(name),
                None => dispatch.push((*f as usize, vec![name])),
            }
        }
        for (f, names) in dispatch {
            let shown = if names.len() > 4 {
                format!("{} and {} more", names[..3].join("/"), names.len() - 3)
            } else {
                names.join("/")
            };
            image.set_entry_role(f, &format!("IRP_MJ_{shown} dispatch"));
        }
        ImageDriver {
            image: Some(image),
            drv_obj,
            entry_status,
            _path: path,
            _us: us,
            unloaded: false,
        }
    }

    /// What DriverEntry returned.
    pub fn entry_status(&self) -> NTSTATUS {
        self.entry_status
    }

    pub fn driver_object(&self) -> PDRIVER_OBJECT {
        self.drv_obj
    }

    pub fn image(&self) -> &Image {
        self.image.as_ref().expect("mapped until unload")
    }

    /// The first device the driver created (None before DriverEntry made one or after
    /// it was deleted).
    pub fn device(&self) -> Option<DeviceHandle> {
        // SAFETY: our driver object; the driver links its devices into it.
        let d = unsafe { (*self.drv_obj).DeviceObject };
        (!d.is_null()).then_some(DeviceHandle(d as usize))
    }

    /// DriverUnload (if DriverEntry succeeded) at PASSIVE_LEVEL, then the sim's end-of-run
    /// check ([`crate::finish`]: leaks and violations, empty = clean), then the image is
    /// unmapped. If the check finds driver code still running, the image stays mapped
    /// (unmapping would pull the code from under it) and that is reported too.
    pub fn unload(mut self) -> Vec<String> {
        self.unload_inner().0
    }

    /// As [`ImageDriver::unload`], also returning the stack depths measured over the whole
    /// run, DriverUnload included (loaded with [`super::LoadOptions::stack_probe`]).
    pub fn unload_with_stack(
        mut self,
    ) -> (Vec<String>, Option<(Vec<super::stack::EntryDepth>, u64)>) {
        self.unload_inner()
    }

    fn unload_inner(&mut self) -> (Vec<String>, Option<(Vec<super::stack::EntryDepth>, u64)>) {
        if self.unloaded {
            return (Vec::new(), None);
        }
        self.unloaded = true;
        if NT_SUCCESS(self.entry_status) {
            // SAFETY: our driver object, filled by the image's DriverEntry.
            match unsafe { (*self.drv_obj).DriverUnload } {
                Some(unload) => {
                    let p = self.drv_obj;
                    // SAFETY: the image's unload routine with its own driver object.
                    crate::run_passive(|| unsafe { unload(p) });
                }
                None => {
                    let mut f = crate::finish();
                    f.push("DriverEntry succeeded but set no DriverUnload".into());
                    let image = self.image.take();
                    let stack = image.as_ref().and_then(Image::stack_depths);
                    std::mem::forget(image);
                    return (f, stack);
                }
            }
        }
        let mut findings = crate::finish();
        let image = self.image.take();
        let stack = image.as_ref().and_then(Image::stack_depths);
        if findings
            .iter()
            .any(|f| f.contains("still running after unload"))
        {
            findings.push("image left mapped: its code may still be running".into());
            std::mem::forget(image);
        } else {
            drop(image);
        }
        (findings, stack)
    }
}

impl Drop for ImageDriver {
    fn drop(&mut self) {
        if !self.unloaded {
            let _ = self.unload_inner();
        }
    }
}

impl DeviceHandle {
    /// One request as a user-mode client makes it: open (IRP_MJ_CREATE),
    /// DeviceIoControl (IRP_MJ_DEVICE_CONTROL, METHOD_BUFFERED), close (IRP_MJ_CLOSE), each
    /// through the driver's MajorFunction table at PASSIVE_LEVEL. The result is the
    /// DEVICE_CONTROL one; a refused open is returned as is.
    ///
    /// # Safety
    /// The driver that owns the device is still loaded and has not deleted it.
    pub unsafe fn ioctl(self, code: u32, input: &[u8], output_len: usize) -> DispatchResult {
        let dev = self.0 as PDEVICE_OBJECT;
        // SAFETY: per the function contract.
        unsafe {
            let open = crate::device::call_dispatch(dev, IRP_MJ_CREATE, 0, &[], 0);
            if !NT_SUCCESS(open.status) {
                return open;
            }
            let r =
                crate::device::call_dispatch(dev, IRP_MJ_DEVICE_CONTROL, code, input, output_len);
            let close = crate::device::call_dispatch(dev, IRP_MJ_CLOSE, 0, &[], 0);
            if !NT_SUCCESS(close.status) {
                crate::kernel::state::violation(format!(
                    "IRP_MJ_CLOSE failed with {:#x} (a close cannot fail)",
                    close.status
                ));
            }
            r
        }
    }
}

/// STATUS_DEVICE_NOT_READY as a dispatch result (no device to send to).
pub fn not_ready() -> DispatchResult {
    DispatchResult {
        returned: STATUS_DEVICE_NOT_READY,
        status: STATUS_DEVICE_NOT_READY,
        information: 0,
        output: Vec::new(),
    }
}

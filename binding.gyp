{
  "targets": [
    {
      "target_name": "udax",
      "sources": ["native/addon.cc", "native/inode.cc", "native/file.cc", "native/region.cc", "native/writeback.cc", "native/lock.cc", "native/fault.cc", "native/flush.cc", "native/message.cc", "native/testing.cc", "native/uffd.cc", "native/uffd_sigbus.cc", "native/resize.cc", "native/resize_lock.cc", "native/freeze.cc", "native/ofd_lock.cc", "native/sidecar.cc", "native/proc_registry.cc", "native/shootdown.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags!": ["-fno-exceptions"],
      "defines!": ["NAPI_DISABLE_CPP_EXCEPTIONS"],
      "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES" }
    }
  ]
}

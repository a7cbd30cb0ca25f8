{
  "targets": [
    {
      "target_name": "tsrun_native",
      "sources": ["native/addon.cc", "native/spawn.cc", "native/security.cc", "native/seccomp.cc", "native/fs.cc", "native/netns-client.cc", "native/loader.cc"],
      "libraries": ["-lseccomp"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"]
    },
    {
      "target_name": "tsrun-monitor",
      "type": "executable",
      "sources": ["native/monitor.cc", "native/spawn.cc", "native/attach.cc", "native/security.cc", "native/netns-client.cc"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "ldflags": ["-static-libstdc++", "-static-libgcc"]
    },
    {
      "target_name": "tsrun-netns",
      "type": "executable",
      "sources": ["native/netns.cc", "native/netlink.cc", "native/spawn.cc", "native/security.cc"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "ldflags": ["-static-libstdc++", "-static-libgcc"]
    },
    {
      "target_name": "tsrun-forward",
      "type": "executable",
      "sources": ["native/forward.cc", "native/spawn.cc", "native/security.cc"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "ldflags": ["-static-libstdc++", "-static-libgcc"]
    }
  ]
}

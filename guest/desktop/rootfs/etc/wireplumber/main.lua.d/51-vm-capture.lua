-- In a virtual machine WirePlumber gives ALSA nodes 256-frame periods and a
-- headroom of 8192 frames (50-alsa-config.lua, vm.node.defaults). With at
-- most 32 periods, a capture buffer is then 8192 frames: PipeWire waits for
-- more than that before it reads, so every capture overruns and restarts
-- ("xrun" in the log) and recorders get nothing. Larger periods give capture
-- a buffer the headroom fits in (32 x 1024 frames).
table.insert(alsa_monitor.rules, {
  matches = {
    {
      { "node.name", "matches", "alsa_input.*" },
    },
  },
  apply_properties = {
    ["api.alsa.period-size"] = 1024,
  },
})

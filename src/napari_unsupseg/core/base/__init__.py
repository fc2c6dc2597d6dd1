"""What every engine and driver shares: the engine contract (:mod:`.engine`), typed
parameters (:mod:`.params`), images and their axes, files in and out, devices, memory
settings and the one error type a user sees (:mod:`.errors`)."""

// The tiled family's CPU FFI targets on the emulator,
// jaxshift_{forward,backward}_cuda_emulated_tiled: cuda/tiled/launch.h with the
// emulator's launcher (emulator/launcher.h), as the GPU handlers run it. Its
// own translation unit, so that the two families compile in parallel.
#include "cuda/tiled/launch.h"
#include "emulator/launcher.h"

JAXSHIFT_EMULATED_FAMILY(tiled)

// The walk family's CPU FFI targets on the emulator,
// jaxshift_{forward,backward}_cuda_emulated_walk: cuda/walk/launch.h with the
// emulator's launcher (emulator/launcher.h), as the GPU handlers run it. Its
// own translation unit, so that the two families compile in parallel.
#include "cuda/walk/launch.h"
#include "emulator/launcher.h"

JAXSHIFT_EMULATED_FAMILY(walk)

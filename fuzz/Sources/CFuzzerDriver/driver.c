// The declaration in include/ is all this target provides; compiler-rt defines the function.
#include "CFuzzerDriver.h"

// Only the declaration in fuzz_driver.h is needed; libFuzzer's runtime defines the function.
#include "fuzz_driver.h"

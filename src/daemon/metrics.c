#include "cashpay/config.h"

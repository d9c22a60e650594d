/* placeholder: replaced by the encoder */
#include "cv.h"
int cv_json_encode(lua_State *L) { return cv_error_raise(L, "json", "encoder not built yet"); }

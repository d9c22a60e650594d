/* placeholder: replaced by the streaming decoder */
#include "cv.h"
int cv_json_decode(lua_State *L) { return cv_error_raise(L, "json", "decoder not built yet"); }
void cv_decoder_open(lua_State *L) { lua_pushcfunction(L, cv_json_decode); }

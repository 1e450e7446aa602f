package pkg

import _ "example.com/testonly"

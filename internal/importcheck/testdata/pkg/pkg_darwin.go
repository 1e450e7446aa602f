package pkg

import _ "example.com/darwinonly"

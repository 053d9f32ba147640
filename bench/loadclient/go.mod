module loadclient

go 1.25

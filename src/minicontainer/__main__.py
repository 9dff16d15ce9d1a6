from minicontainer.main import main

main()
